"""validate.py's checks for a sentence-embedding package (`anelm export-coreml --model <embedder folder>`; anelm.json has
an `encoder` section). Called by validate.py; no torch.

What it asserts, independently of the Swift lowering and its executor:
- coremltools opens the package and rebuilds every function's MIL program (`milproto.load`, type inference of every op);
- the functions are `embed_<S>` for anelm.json's sequence lengths, each S within the source config's positions;
  no state; inputs `tokens` int32 (S) and `attention_mask` fp16 (1, 1, 1, S), output `embedding` fp16 (1, hidden, 1, 1);
- anelm.json's pooling, normalization and dimensions are the source folder's sentence-transformers modules';
- op types only ANEOpKind's MIL names, `reshape` and the weights mode's constexpr op; every shape static; the lint's
  rules (validate.check_ane_rules); weight.bin parsed here, each shared constant one blob;
- weights: every conv weight and bias, the word, position and token-type embeddings and every LayerNorm equal the
  source safetensors read here with numpy (1/sqrt(head_dim) folded into q and its bias), rounded to fp16; compressed
  weights (int8 per output channel, LUT) dequantize within half a quantization step or to the nearest table entry;
- with --reference (Tests/Fixtures/embeddings/*.json, sentence-transformers' vectors): every case is *run* here in numpy
  (validate.run_function, per the coremltools op definitions) on the shortest function that holds it (most with
  padding masked), the first case on every function, and its embedding's cosine with sentence-transformers' must
  reach --tolerance (default 0.999).
"""
import json
import math
import os

import numpy as np

import validate as v

INPUTS_NOTE = "tokens int32 (S), attention_mask fp16 (1, 1, 1, S): 1 over the text, 0 over the padding"


def source_tensors(folder):
    """The encoder's tensors (without a `bert.` prefix) and its config."""
    config = json.load(open(os.path.join(folder, "config.json")))
    tensors = v.read_safetensors(os.path.join(folder, "model.safetensors"))
    if "embeddings.word_embeddings.weight" not in tensors:
        tensors = {k[len("bert."):]: t for k, t in tensors.items() if k.startswith("bert.")}
    return tensors, config


def source_pipeline(folder):
    """Pooling mode and normalization as the folder's modules.json and 1_Pooling/config.json say (a folder without
    modules.json: mean pooling, not normalized)."""
    path = os.path.join(folder, "modules.json")
    if not os.path.exists(path):
        return "mean", False
    modules = json.load(open(path))
    pooling_dir = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
    cfg = json.load(open(os.path.join(folder, pooling_dir, "config.json")))
    names = {"mean": "mean", "cls": "cls", "max": "max", "mean_sqrt_len_tokens": "meanSqrtLength"}
    if "pooling_mode" in cfg:
        mode = names[cfg["pooling_mode"]]
    else:
        flags = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
                 "pooling_mode_mean_sqrt_len_tokens": "meanSqrtLength"}
        on = [m for k, m in flags.items() if cfg.get(k)]
        v.check(len(on) == 1, f"pooling config: {on}")
        mode = on[0]
    return mode, modules[-1]["type"].endswith("Normalize")


def expected_constants(tensors, config):
    """Constant name → the source values the lowering must have written (before fp16 rounding)."""
    f32 = np.float32
    heads = config["num_attention_heads"]
    head_dim = config["hidden_size"] // heads
    scale = f32(1) / np.sqrt(f32(head_dim))
    out = {
        "word_embeddings": tensors["embeddings.word_embeddings.weight"],
        "position_embeddings": tensors["embeddings.position_embeddings.weight"],
        "token_type_embedding": tensors["embeddings.token_type_embeddings.weight"][0],
        "embeddings_norm_weight": tensors["embeddings.LayerNorm.weight"],
        "embeddings_norm_bias": tensors["embeddings.LayerNorm.bias"],
    }
    linears = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value", "o": "attention.output.dense",
               "intermediate": "intermediate.dense", "output": "output.dense"}
    norms = {"attention_norm": "attention.output.LayerNorm", "output_norm": "output.LayerNorm"}
    for l in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{l}."
        for name, key in linears.items():
            s = scale if name == "q" else f32(1)
            out[f"l{l}_{name}_weight"] = (tensors[p + key + ".weight"].astype(f32) * s).astype(f32)
            out[f"l{l}_{name}_bias"] = (tensors[p + key + ".bias"].astype(f32) * s).astype(f32)
        for name, key in norms.items():
            out[f"l{l}_{name}_weight"] = tensors[p + key + ".weight"]
            out[f"l{l}_{name}_bias"] = tensors[p + key + ".bias"]
    return out


def check_weights(prog, function, expected, weights, info):
    """Each expected constant of `function` against the source; returns the report line."""
    producers = {op.outputs[0].name: op for op in function.operations if op.outputs}
    convs = {op.weight.name for op in function.operations if op.op_type == "conv"}
    tables = {op.x.name for op in function.operations if op.op_type == "gather"}
    v.check(convs | tables <= set(expected), f"weights with no source tensor: {sorted((convs | tables) - set(expected))[:5]}")
    compressed, errors = 0, [0.0, 0.0]
    for name, want in expected.items():
        v.check(name in producers, f"constant {name} is not in the program")
        op = producers[name]
        want = np.asarray(want, np.float32)
        transposed = name in ("word_embeddings", "position_embeddings")
        if transposed:  # (1, hidden, 1, rows): the table transposed
            want = want.T.reshape(1, want.shape[1], 1, want.shape[0])
        w = v.fp16(want)
        if op.op_type == "const":
            got = np.asarray(op.outputs[0].val, np.float32)
            v.check(got.size == w.size, f"{name}: {got.shape}, source {w.shape}")
            got = got.reshape(w.shape) if transposed else got.reshape(-1)
            w = w if transposed else w.reshape(-1)
            v.check(np.array_equal(got, w), f"{name}: {int((got != w).sum())} values differ from the source (max {np.abs(got - w).max()})")
            v.check(weights == "fp16" or name not in convs | tables, f"{name} is not compressed under --weights {weights}")
            continue
        v.check(op.op_type == v.CONSTEXPR.get(weights), f"{name}: {op.op_type} under --weights {weights}")
        got = np.asarray(op.materialized_val_inference(), np.float32)
        # Rows: a conv's output channels (axis 0), a table's entries (axis 3); cols the other axis that is not 1.
        row_axis = 3 if name in tables else 0
        rows = got.shape[row_axis]
        matrix = lambda a: np.moveaxis(a.reshape(got.shape), row_axis, 0).reshape(rows, -1)
        g, ww = matrix(got), matrix(w.reshape(got.shape))
        if op.op_type == "constexpr_blockwise_shift_scale":
            scale = np.moveaxis(op.scale.val.astype(np.float32), row_axis, 0).reshape(rows, -1)
            v.check(scale.shape[1] == 1, f"{name}: {scale.shape[1]} scales per output channel under --weights int8")
            step = np.spacing(np.abs(g).astype(np.float16)).astype(np.float32)
            v.check(np.all(np.abs(g - ww) <= scale / 2 + step / 2), f"{name}: dequantized beyond half a step of the source")
        else:
            lut = op.lut.val.astype(np.float32)
            tables_ = lut.reshape(-1, lut.shape[-2])
            group = rows // len(tables_)
            v.check(group <= info["metadata"].get("lut_group", 16), f"{name}: {group} rows per table")
            for start in range(0, rows, group):
                t = tables_[start // group].astype(np.float64)
                block = ww[start:start + group].astype(np.float64).reshape(-1)
                best = np.abs(block[:, None] - t[None, :]).min(axis=1)
                chosen = np.abs(block - g[start:start + group].astype(np.float64).reshape(-1))
                v.check(np.all(chosen <= best + 1e-3 * np.abs(block) + 1e-6), f"{name}: rows {start}…: not the nearest table entry")
        compressed += 1
        errors[0] += float(((g - ww) ** 2).sum())
        errors[1] += float((ww ** 2).sum())
    return f"{len(expected)} constants equal the source" + ("" if not compressed else
        f" ({compressed} compressed within their quantization; relative RMS error {math.sqrt(errors[0] / errors[1]):.4g})")


def validate_encoder(args, info):
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto import load as milproto
    from coremltools.converters.mil.mil import types

    pkg, report = args.package, {}
    manifest = json.load(open(os.path.join(pkg, "Manifest.json")))
    v.check(manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]["path"] == "com.apple.CoreML/model.mlmodel", "Manifest.json: root model")
    v.check(info["format_version"] == 1 and info["weights"] == args.weights, f"anelm.json: format {info['format_version']}, weights {info['weights']}")
    enc = info["encoder"]
    tensors, config = source_tensors(args.source)
    pooling, normalized = source_pipeline(args.source)
    hidden = config["hidden_size"]
    v.check((enc["dimensions"], enc["pooling"], enc["normalized"]) == (hidden, pooling, normalized),
            f"anelm.json encoder {enc}; the source: {hidden} dimensions, {pooling} pooling, normalized {normalized}")
    lengths = enc["sequence_lengths"]
    v.check(lengths == sorted(set(lengths)) and lengths[-1] <= config.get("max_position_embeddings", 512), f"sequence lengths {lengths}")
    v.check(info["functions"] == [f"embed_{s}" for s in lengths], f"functions {info['functions']} for lengths {lengths}")

    model = ct.models.MLModel(pkg, skip_model_load=True)
    spec = model.get_spec()
    v.check(spec.specificationVersion == 9 and spec.WhichOneof("Type") == "mlProgram", "not an ML Program of specification version 9")
    weights_dir = os.path.join(pkg, "Data/com.apple.CoreML/weights")
    prog = milproto.load(spec, specification_version=9, file_weights_dir=weights_dir)
    described = {f.name: f for f in spec.description.functions}
    v.check(list(described) == info["functions"] and set(prog.functions) == set(info["functions"]), f"functions {list(described)}, {sorted(prog.functions)}")

    allowed = v.op_kinds() | {"reshape"} | ({v.CONSTEXPR[args.weights]} if args.weights in v.CONSTEXPR else set())
    for s, name in zip(lengths, info["functions"]):
        f = prog.functions[name]
        v.check(not v.state_inputs(spec.mlProgram.functions[name]), f"{name}: an embedding function has no state")
        inputs = {n: (x.dtype, tuple(x.shape)) for n, x in f.inputs.items()}
        v.check(inputs == {"tokens": (types.int32, (s,)), "attention_mask": (types.fp16, (1, 1, 1, s))}, f"{name}: inputs {inputs}; expected {INPUTS_NOTE}")
        outputs = [(x.name, x.dtype, tuple(x.shape)) for x in f.outputs]
        v.check(outputs == [("embedding", types.fp16, (1, hidden, 1, 1))], f"{name}: outputs {outputs}")
        kinds = {op.type for op in spec.mlProgram.functions[name].block_specializations["CoreML8"].operations}
        v.check(kinds <= allowed, f"{name}: op types outside the lowered set: {sorted(kinds - allowed)}")
        v.check(kinds >= {"conv", "gelu", "softmax", "matmul", "reduce_mean"}, f"{name}: op types {sorted(kinds)}")
        gelus = {str(op.mode.val) for op in f.operations if op.op_type == "gelu"}
        v.check(gelus == {"EXACT"}, f"{name}: gelu modes {gelus} (the model's hidden_act {config.get('hidden_act')} is erf GELU)")
        for op in f.operations:
            for out in op.outputs:
                v.check(all(isinstance(d, (int, np.integer)) for d in out.shape), f"{name}: {out.name} has a non-static shape {out.shape}")
        report[f"{name} ops"] = f"{len(f.operations)} ({', '.join(sorted(kinds))})"
    report["ane rules"] = v.check_ane_rules(spec, prog, args, pkg)

    refs = v.blob_refs(spec)
    blobs, size = v.check_weight_file(os.path.join(weights_dir, "weight.bin"), refs)
    by_name = {}
    for _, opname, key, offset, _, _ in refs:
        by_name.setdefault((opname, key), set()).add(offset)
    v.check(all(len(o) == 1 for o in by_name.values()), "a constant shared by functions is written more than once")
    report["weight.bin"] = f"{size} bytes = 64 + {len(blobs)} x (64 + data), aligned"
    expected = expected_constants(tensors, config)
    for name in info["functions"]:
        line = check_weights(prog, prog.functions[name], expected, args.weights, info)
    report["weights"] = line + f", in each of {len(lengths)} functions"

    tok = os.path.join(pkg, "Data/com.anelm/tokenizer")
    for name in ("tokenizer.json", "config.json"):
        v.check(open(os.path.join(tok, name), "rb").read() == open(os.path.join(args.source, name), "rb").read(), f"tokenizer/{name} is not the source's")
    report["tokenizer"] = ", ".join(sorted(os.listdir(tok)))
    if args.reference:
        report["run"] = run_reference(prog, lengths, info, args)
    return report


def run_reference(prog, lengths, info, args):
    """Each fixture case on every function that holds it; cosine with sentence-transformers' embedding."""
    fixture = json.load(open(args.reference))
    v.check(fixture["max_seq_length"] == info["encoder"]["max_seq_length"],
            f"anelm.json max_seq_length {info['encoder']['max_seq_length']}, sentence-transformers' {fixture['max_seq_length']}")
    limit = args.tolerance if args.tolerance is not None else 0.999
    worst, runs = 1.0, 0
    for index, case in enumerate(fixture["cases"]):
        ids = case["ids"]
        want = np.asarray(case["embedding"], np.float64)
        fitting = [s for s in lengths if s >= len(ids)]
        # The shortest function that holds it (as an app picks), and the first case on every function.
        for s in fitting if index == 0 else fitting[:1]:
            tokens = np.zeros(s, np.int32)
            tokens[:len(ids)] = ids
            mask = np.zeros((1, 1, 1, s), np.float32)
            mask[..., :len(ids)] = 1
            out = v.run_function(prog.functions[f"embed_{s}"], {"tokens": tokens, "attention_mask": mask}, {})
            got = out["embedding"].reshape(-1).astype(np.float64)
            v.check(np.isfinite(got).all(), f"run: {case['text']!r} on embed_{s}: not finite")
            cosine = float(got @ want / max(np.linalg.norm(got) * np.linalg.norm(want), 1e-30))
            worst, runs = min(worst, cosine), runs + 1
            v.check(cosine >= limit, f"run: {case['text']!r} on embed_{s}: cosine {cosine:.6f} with sentence-transformers (limit {limit})")
    v.check(runs > 0, "run: no fixture case fits a function")
    return f"{len(fixture['cases'])} texts, {runs} runs in numpy (padding masked): worst cosine with sentence-transformers {worst:.6f} (limit {limit})"


# ---------------------------------------------------------------------------------------------- relevance model


def validate_relevance(args, info):
    """A relevance-model package (`export-coreml --relevance`; anelm.json architecture anelm-relevance-model) against the
    context store it came from (--source STORE.sqlite, read here with sqlite3): read back, MIL rebuilt, interface, weights
    equal the stored model's; numpy runs of the candidates of the answers logged with this version against the Swift
    scorer's logged probabilities, and of random candidates against the scorer's formula written here (|probability
    difference| at most --tolerance, default 0.01)."""
    import sqlite3
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto import load as milproto
    from coremltools.converters.mil.mil import types

    pkg, report = args.package, {}
    meta = info["metadata"]
    version, d, hidden, batch = meta["relevance_version"], meta["dimensions"], meta["hidden"], meta["batch"]
    db = sqlite3.connect(f"file:{args.source}?mode=ro", uri=True)
    row = db.execute("SELECT metrics, weights FROM relevance_models WHERE version = ?", (version,)).fetchone()
    v.check(row is not None, f"the store has no relevance model version {version}")
    metrics = json.loads(row[0])
    v.check((metrics["dimensions"], metrics["hidden"]) == (d, hidden), f"stored sizes {metrics['dimensions']}, {metrics['hidden']}; anelm.json {d}, {hidden}")
    values = np.frombuffer(row[1], "<f4").astype(np.float32)
    n_in = 2 * d + 6
    v.check(values.size == hidden * n_in + 2 * hidden + 1 + 12, f"{values.size} stored weights for {hidden} hidden units over {n_in} inputs")
    w1 = values[:hidden * n_in].reshape(hidden, n_in)
    b1 = values[hidden * n_in:hidden * n_in + hidden]
    w2 = values[hidden * n_in + hidden:hidden * n_in + 2 * hidden]
    b2 = values[hidden * n_in + 2 * hidden]
    mean, dev = values[-12:-6], values[-6:]

    model = ct.models.MLModel(pkg, skip_model_load=True)
    spec = model.get_spec()
    v.check(spec.specificationVersion == 9 and spec.WhichOneof("Type") == "mlProgram", "not an ML Program of specification version 9")
    weights_dir = os.path.join(pkg, "Data/com.apple.CoreML/weights")
    prog = milproto.load(spec, specification_version=9, file_weights_dir=weights_dir)
    name = f"score_{batch}"
    v.check(info["functions"] == [name] and set(prog.functions) == {name}, f"functions {info['functions']}, {sorted(prog.functions)}")
    f = prog.functions[name]
    v.check(not v.state_inputs(spec.mlProgram.functions[name]), "a relevance function has no state")
    inputs = {n: (x.dtype, tuple(x.shape)) for n, x in f.inputs.items()}
    want_inputs = {"query": (types.fp16, (1, d, 1, 1)), "chunks": (types.fp16, (1, d, 1, batch)), "features": (types.fp16, (1, 6, 1, batch))}
    v.check(inputs == want_inputs, f"inputs {inputs}")
    outputs = {x.name: (x.dtype, tuple(x.shape)) for x in f.outputs}
    v.check(outputs == {"probability": (types.fp16, (1, 1, 1, batch)), "logit": (types.fp16, (1, 1, 1, batch))}, f"outputs {outputs}")
    allowed = v.op_kinds() | {"reshape"} | ({v.CONSTEXPR[args.weights]} if args.weights in v.CONSTEXPR else set())
    kinds = {op.type for op in spec.mlProgram.functions[name].block_specializations["CoreML8"].operations}
    v.check(kinds <= allowed, f"op types outside the lowered set: {sorted(kinds - allowed)}")
    report[f"{name} ops"] = f"{len(f.operations)} ({', '.join(sorted(kinds))})"
    report["ane rules"] = v.check_ane_rules(spec, prog, args, pkg)
    blobs, size = v.check_weight_file(os.path.join(weights_dir, "weight.bin"), v.blob_refs(spec))
    report["weight.bin"] = f"{size} bytes = 64 + {len(blobs)} x (64 + data), aligned"

    stored = info["relevance"]
    v.check(np.array_equal(np.float32(stored["feature_mean"]), mean) and np.array_equal(np.float32(stored["feature_deviation"]), dev),
            "anelm.json relevance feature_mean/feature_deviation are not the stored model's")
    expected = {"hidden_weight": w1, "hidden_bias": b1, "output_weight": w2 / np.float32(2), "output_bias": np.array([b2])}
    line = check_weights(prog, f, expected, args.weights, info)
    report["weights"] = line.replace("the source", f"the store's version {version}")

    def formula(q, chunks, feats):
        """RelevanceModel.logit's network and the sigmoid, in float64 (q (d), chunks (d, n), standardized features (6, n))."""
        x = np.concatenate([q[:, None] * chunks * math.sqrt(d), chunks, feats], axis=0).astype(np.float64)
        z = w2.astype(np.float64) @ np.maximum(w1.astype(np.float64) @ x + b1[:, None], 0) + float(b2)
        return 1 / (1 + np.exp(-z))

    def run(q, chunks, feats):
        feeds = {"query": q.reshape(1, d, 1, 1), "chunks": chunks.reshape(1, d, 1, batch), "features": feats.reshape(1, 6, 1, batch)}
        feeds = {k: v.fp16(a) for k, a in feeds.items()}  # the inputs as Core ML receives them, fp16
        return v.run_function(f, feeds, {})["probability"].reshape(-1).astype(np.float64)

    # Every logged answer's candidates (the training log: real query and chunk vectors, features rebuilt here as
    # RelevanceModel.scalarFeatures defines them) against the formula; and for answers ranked by this version, against
    # the Swift scorer's own results (answer_chunks.score is the probability it gave).
    limit = args.tolerance if args.tolerance is not None else 0.01
    vectors = {cid: np.frombuffer(b, "<f4") for cid, b in db.execute("SELECT chunk_id, data FROM vectors")}
    worst_formula, worst_swift, candidates, ranked = 0.0, 0.0, 0, 0
    for answer_id, qblob, used_version in db.execute("SELECT id, query_vector, relevance_version FROM answers").fetchall():
        q = np.frombuffer(qblob, "<f4").astype(np.float32)
        rows = db.execute("SELECT chunk_id, dense_score, dense_rank, bm25_score, bm25_rank, fused_score, score, token_count FROM answer_chunks "
                          "WHERE answer_id = ? ORDER BY rank", (answer_id,)).fetchall()[:batch]
        v.check(q.size == d and all(vectors[r[0]].size == d for r in rows), f"answer {answer_id}: vectors are not f32 of {d} dimensions")
        chunks = np.zeros((d, batch), np.float32)
        feats = np.zeros((6, batch), np.float32)
        for col, (cid, dense, dense_rank, bm25, bm25_rank, fused, _, tokens) in enumerate(rows):
            chunks[:, col] = vectors[cid]
            reciprocal = lambda rank: 0.0 if rank is None else np.float32(1 / (60.0 + rank)) * np.float32(60)
            raw = np.float32([dense, bm25 or 0.0, reciprocal(dense_rank), reciprocal(bm25_rank), fused * 30, math.log1p(max(0, tokens))])
            feats[:, col] = (raw - mean) / dev  # standardized by the app in f32 (anelm.json relevance)
        got = run(q, chunks, feats)[:len(rows)]
        worst_formula = max(worst_formula, float(np.abs(got - formula(q, chunks, feats)[:len(rows)]).max()))
        candidates += len(rows)
        if used_version == version:
            worst_swift = max(worst_swift, float(np.abs(got - np.array([r[6] for r in rows], np.float64)).max()))
            ranked += 1
    v.check(candidates > 0, "run: the store logged no answer")
    v.check(worst_formula <= limit and worst_swift <= limit,
            f"run: logged candidates' probabilities {worst_formula:.4g} from the formula, {worst_swift:.4g} from the Swift scorer's (limit {limit})")
    report["logged run"] = f"{candidates} logged candidates in numpy: worst |probability difference| from the formula {worst_formula:.4g}" + \
        (f", from the Swift scorer's logged probabilities {worst_swift:.4g} ({ranked} answers ranked by version {version})" if ranked else
         f" (no answer was ranked by version {version}: no Swift probabilities logged)") + f" (limit {limit})"

    # Random candidates: unit vectors (half of them near the query), standardized features ~ N(0, 1).
    rng = np.random.default_rng(1)
    q = rng.standard_normal(d)
    q /= np.linalg.norm(q)
    chunks = rng.standard_normal((d, batch))
    chunks /= np.linalg.norm(chunks, axis=0)
    chunks[:, batch // 2:] = 0.6 * q[:, None] + 0.4 * chunks[:, batch // 2:]
    feats = rng.standard_normal((6, batch)).astype(np.float32)
    got, want = run(q, chunks, feats), formula(q, chunks, feats)
    worst = float(np.abs(got - want).max())
    v.check(worst <= limit, f"run: probabilities {worst:.4g} from the scorer's formula (limit {limit})")
    report["run"] = f"{batch} random candidates in numpy: worst |probability difference| from the scorer's formula {worst:.4g} (limit {limit})"
    return report
