import ANELM
import Foundation
import XCTest

/// Gemma 3 text against transformers: tiny random folders (local/global layers, window 8, soft-caps),
/// the same weights written as a GGUF the way llama.cpp lays it out, and the config llama.cpp's
/// metadata of the real gemma-3-270m yields.
final class Gemma3Tests: XCTestCase {
    func testTinyGemma3() throws { try checkReferenceExact("tiny-gemma3") }
    func testTinyGemma3SoftCapped() throws { try checkReferenceExact("tiny-gemma3-softcap") }

    /// The real Gemma 3 270M from its Q4_K_M GGUF (SentencePiece tokenizer, Q4_K/Q5_0/Q6_K weights),
    /// `--precision f32`, against transformers loading the same file.
    func testGemma3_270mGGUF() throws {
        guard let path = gemmaModelPath() else { throw XCTSkip("Gemma 3 270M not installed (scripts/fetch-gemma3)") }
        try checkReferenceExact("gemma-3-270m", modelPath: path)
    }

    /// The default path on Gemma 3 270M (Q4_K/Q5_0/Q6_K × 16-bit activations), reported.
    func testGemma3_270mDefaultPathFidelity() throws {
        guard let path = gemmaModelPath() else { throw XCTSkip("Gemma 3 270M not installed (scripts/fetch-gemma3)") }
        let f = try measureDefaultPathFidelity("gemma-3-270m", modelPath: path)
        XCTAssertEqual(f.top1, f.cases)
        XCTAssertGreaterThanOrEqual(f.agreement, 0.95)  // measured 280/280, max logit error 0.002
        XCTAssertLessThan(f.worstLogit, 0.02)
    }

    /// tiny-gemma3-softcap rewritten as a GGUF (llama.cpp names, norms stored as 1 + w, `gemma3.*`
    /// metadata): same logits at every position and the same greedy tokens as transformers on the folder.
    func testGGUFLayoutMatchesFolder() throws {
        let fixture = try ModelFixture.load("tiny-gemma3-softcap")
        let url = temporaryFile("tiny-gemma3-softcap.gguf")
        try Self.ggufFromFolder(try fixture.modelPath()).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let source = ModelSource.gguf(try GGUFFile(path: url.path))
        XCTAssertEqual(try source.architecture(), "gemma3")
        let model = try ModelRegistry.build(source, options: LoadOptions(precision: .f32), pool: ThreadPool(threads: 2))
        let vocab = fixture.model.vocab_size
        for c in fixture.cases {
            let state = model.makeState()
            let logits = try model.forward(c.prompt_ids, state: state, allPositions: true)
            var worst = maxError(logits[(logits.count - vocab)...], c.last_logits ?? [])
            if let rows = c.all_position_logits {
                for (p, row) in rows.enumerated() { worst = max(worst, maxError(logits[(p * vocab)..<((p + 1) * vocab)], row)) }
            }
            XCTAssertLessThanOrEqual(worst, ModelFixture.tolerance, "gguf/\(c.name): max logit error \(worst)")
            var next = argmax(Array(logits[(logits.count - vocab)...]))
            var tokens: [Int] = []
            for _ in 0..<c.greedy.max_new_tokens {
                tokens.append(next)
                next = argmax(try model.forward([next], state: state, allPositions: false))
            }
            XCTAssertEqual(tokens, c.greedy.ids, "gguf/\(c.name): greedy")
        }
    }

    /// `Gemma3Configuration(gguf:)` on the metadata of gemma-3-270m-q4_k_m.gguf gives the config
    /// transformers builds from that file (its GGUF loader + Gemma3TextConfig defaults).
    func testConfigurationFromRealGGUFMetadata() throws {
        struct Facts: Decodable {
            struct Entry: Decodable {
                let key: String
                let type: String
                let value: JSONValue
            }
            struct Config: Decodable {
                let hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim: Int
                let rms_norm_eps: Double
                let vocab_size, max_position_embeddings, sliding_window: Int
                let tie_word_embeddings: Bool
                let query_pre_attn_scalar: Double
                let layer_types: [String]
                let rope_parameters: [String: JSONObject]
                let attn_logit_softcapping, final_logit_softcapping: Double?
            }
            let metadata: [Entry]
            let tensor_names: [String]
            let transformers_config: Config
        }
        let facts = try JSONDecoder().decode(Facts.self, from: Data(contentsOf: ModelFixture.directory.appendingPathComponent("gemma3-270m-gguf-config.json")))
        var w = GGUFWriter()
        for e in facts.metadata {
            switch (e.type, e.value.stringValue, e.value.numberValue) {
            case ("STRING", let s?, _): w.metadata.append((e.key, .string(s)))
            case ("UINT32", _, let d?): w.metadata.append((e.key, .u32(UInt32(d))))
            case ("FLOAT32", _, let d?): w.metadata.append((e.key, .f32(Float(d))))
            default: XCTFail("unexpected metadata \(e.key) of type \(e.type)")
            }
        }
        w.metadata.append(("tokenizer.ggml.tokens", .array(elementType: 8, (0..<facts.transformers_config.vocab_size).map { _ in .string("") })))
        w.tensors = facts.tensor_names.map { ($0, [1], 0, floatBytes([0])) }
        let url = temporaryFile("gemma3-270m-metadata.gguf")
        try w.write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let c = try Gemma3Configuration(gguf: try GGUFFile(path: url.path))
        let t = facts.transformers_config
        XCTAssertEqual(c.hiddenSize, t.hidden_size)
        XCTAssertEqual(c.intermediateSize, t.intermediate_size)
        XCTAssertEqual(c.numHiddenLayers, t.num_hidden_layers)
        XCTAssertEqual(c.numAttentionHeads, t.num_attention_heads)
        XCTAssertEqual(c.numKeyValueHeads, t.num_key_value_heads)
        XCTAssertEqual(c.headDim, t.head_dim)
        XCTAssertEqual(c.rmsNormEps, Float(t.rms_norm_eps))
        XCTAssertEqual(c.vocabSize, t.vocab_size)
        XCTAssertEqual(c.maxPositionEmbeddings, t.max_position_embeddings)
        XCTAssertEqual(c.slidingWindow, t.sliding_window)
        XCTAssertEqual(c.tieWordEmbeddings, t.tie_word_embeddings)
        XCTAssertEqual(c.queryPreAttnScalar, Float(t.query_pre_attn_scalar))
        XCTAssertEqual(c.layerTypes.map(\.rawValue), t.layer_types)
        XCTAssertEqual(c.ropeTheta, Float(t.rope_parameters["full_attention"]?["rope_theta"]?.numberValue ?? -1))
        XCTAssertEqual(c.ropeLocalBaseFreq, Float(t.rope_parameters["sliding_attention"]?["rope_theta"]?.numberValue ?? -1))
        XCTAssertEqual(c.ropeScaling, try RoPEScaling(json: t.rope_parameters["full_attention"]))
        XCTAssertEqual(c.attnLogitSoftcapping.map(Double.init), t.attn_logit_softcapping)
        XCTAssertEqual(c.finalLogitSoftcapping.map(Double.init), t.final_logit_softcapping)
        XCTAssertNoThrow(try c.validate())
    }

    /// The Hub's older config.json style (rope_theta, rope_local_base_freq, rope_scaling,
    /// sliding_window_pattern) maps onto the same fields as transformers' `convert_rope_params_to_dict`.
    func testHubStyleConfigJSON() throws {
        let json = """
            {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "hidden_size": 64, "intermediate_size": 80,
             "num_hidden_layers": 7, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16, "vocab_size": 512,
             "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "rope_scaling": {"rope_type": "linear", "factor": 8.0},
             "sliding_window": 512, "sliding_window_pattern": 3, "query_pre_attn_scalar": 16, "final_logit_softcapping": null}
            """
        let c = try Gemma3Configuration(configJSON: Data(json.utf8))
        XCTAssertEqual(
            c.layerTypes, [.slidingAttention, .slidingAttention, .fullAttention, .slidingAttention, .slidingAttention, .fullAttention, .slidingAttention])
        XCTAssertEqual(c.ropeScaling, .linear(factor: 8))
        XCTAssertEqual(c.ropeTheta, 1_000_000)
        XCTAssertEqual(c.ropeLocalBaseFreq, 10_000)
        XCTAssertTrue(c.tieWordEmbeddings)
        XCTAssertNil(c.finalLogitSoftcapping)
        XCTAssertThrowsError(
            try Gemma3Configuration(
                configJSON: Data(
                    #"{"hidden_size": 64, "intermediate_size": 8, "num_hidden_layers": 1, "vocab_size": 8, "use_bidirectional_attention": true}"#.utf8)))
        var bad = c
        bad.layerTypes.removeLast()
        XCTAssertThrowsError(try bad.validate())
    }

    /// A GGUF as llama.cpp's converter writes a Gemma 3 text model, from a Hugging Face folder of f32 weights.
    static func ggufFromFolder(_ path: String) throws -> GGUFWriter {
        let folder = try HFModelFolder(path: path)
        let c = try Gemma3Configuration(configJSON: folder.configData)
        var w = GGUFWriter()
        w.metadata = [
            ("general.architecture", .string("gemma3")),
            ("gemma3.context_length", .u32(UInt32(c.maxPositionEmbeddings))),
            ("gemma3.embedding_length", .u32(UInt32(c.hiddenSize))),
            ("gemma3.block_count", .u32(UInt32(c.numHiddenLayers))),
            ("gemma3.feed_forward_length", .u32(UInt32(c.intermediateSize))),
            ("gemma3.attention.head_count", .u32(UInt32(c.numAttentionHeads))),
            ("gemma3.attention.head_count_kv", .u32(UInt32(c.numKeyValueHeads))),
            ("gemma3.attention.key_length", .u32(UInt32(c.headDim))),
            ("gemma3.attention.value_length", .u32(UInt32(c.headDim))),
            ("gemma3.attention.layer_norm_rms_epsilon", .f32(c.rmsNormEps)),
            ("gemma3.rope.freq_base", .f32(c.ropeTheta)),
            ("gemma3.attention.sliding_window", .u32(UInt32(c.slidingWindow))),
            ("gemma3.attention.sliding_window_pattern", .array(elementType: 7, c.layerTypes.map { .bool($0 == .slidingAttention) })),
            ("gemma3.vocab_size", .u32(UInt32(c.vocabSize))),
        ]
        if let cap = c.attnLogitSoftcapping { w.metadata.append(("gemma3.attn_logit_softcapping", .f32(cap))) }
        if let cap = c.finalLogitSoftcapping { w.metadata.append(("gemma3.final_logit_softcapping", .f32(cap))) }
        let renames: [(String, String)] = [
            ("model.embed_tokens.weight", "token_embd.weight"), ("model.norm.weight", "output_norm.weight"), ("lm_head.weight", "output.weight"),
            ("input_layernorm", "attn_norm"), ("post_attention_layernorm", "post_attention_norm"),
            ("pre_feedforward_layernorm", "ffn_norm"), ("post_feedforward_layernorm", "post_ffw_norm"),
            ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"),
            ("self_attn.o_proj", "attn_output"), ("self_attn.q_norm", "attn_q_norm"), ("self_attn.k_norm", "attn_k_norm"),
            ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down"), ("model.layers.", "blk."),
        ]
        for name in folder.tensors.tensorNames {
            guard let t = try folder.tensors.tensor(named: name), t.type == .f32 else { throw XCTSkip("\(name) is not f32") }
            var values = Array(t.data.bindMemory(to: Float.self))
            // llama.cpp stores Gemma's norm weights with the 1 of `1 + w` added.
            if name.hasSuffix("norm.weight") { values = values.map { 1 + $0 } }
            let ggufName = renames.reduce(name) { $0.replacingOccurrences(of: $1.0, with: $1.1) }
            w.tensors.append((ggufName, t.shape.reversed().map(UInt64.init), 0, floatBytes(values)))
        }
        return w
    }
}
