/// xLSTM (mLSTM blocks, the xLSTM-7B design as transformers' xLSTMForCausalLM defines it) on the Neural
/// Engine. Pre-norm blocks: x + out_proj(sigmoid(o) · MultiHeadNorm(mLSTM cell(q, k, v, i, f))), then
/// x + SwiGLU(norm(x)); soft-capped gate pre-activations and logits (cap · tanh(x / cap)).
///
/// `decode` is the recurrent step, `prefill` the chunkwise-parallel form over the whole block of B columns
/// (intra-block gated matmuls, then one inter-block state update), so a prompt costs ⌈n / B⌉ calls. Every
/// cell op is per head on (1, C, 1, S) tensors: static channel slices, 1×1 convs, matmuls of (C, S)
/// matrices; no reshape.
///
/// The state. Per layer and head the cell keeps C (dk × dv), n (dk) and the stabilizer m. They live in ONE
/// Core ML state, `mlstm_state` (layers·heads, dk, 1, dv + 2): slot l·heads + h holds C in columns 0..<dv,
/// n in column dv and m in column dv + 1 (the same m in every row, so it broadcasts against n and C
/// without a reshape). One state of one shape in both functions (and in every chunk of a chained
/// export), because Core ML models with three or more states, or states of different shapes, are reported
/// to fail on the ANE (issue #20) — 3 · layers states of three shapes would break both rules. Each slot is
/// a static slice of the one read, its parts static column slices; the updated slots are concatenated
/// and written back once (no dynamic slice end anywhere).
///
/// fp16 safety of the gates (the exponential input gate overflows fp16 unstabilized: e¹¹ already nears
/// 65,504). The cell keeps C, n at the scale e^(−m), m the running max of the log gates:
///   step:  m' = max(log σ(f) + m, i),  C' = e^(log σ(f) + m − m') · C + e^(i − m') · k vᵀ,  n' likewise,
/// so both factors are e^(≤ 0) ≤ 1. In a block with b_t = Σ_{s≤t} log σ(f_s) and
/// A[j][t] = Σ_{j<s≤t} log σ(f_s) + i_j (j ≤ t), output t uses m_t = max(b_t + m, max_j A[j][t]) and the
/// weights e^(A[j][t] − m_t) ≤ 1 (intra) and e^(b_t + m − m_t) ≤ 1 (the state); the state moves to the
/// block's end with m'' = max(b_B + m, max_j A[j][B]) and factors e^(b_B + m − m''), e^(A[j][B] − m'') ≤ 1.
/// The output is h = (q·C) / (max(|q·n|, e^(−m)) + eps): e^(−m) is the one exponential with a positive
/// argument, as large as e^(cap) (e¹⁵ ≈ 3.3e6 with the default gate cap), so it is taken of min(−m, 11)
/// (e¹¹ ≈ 59,874 < 65,504). Where that clamp bites, the true denominator is ≥ e¹¹ and h is within a factor
/// e^(−m − 11) of a value already below |q·C| / 59,874 — the per-head norm that follows sees noise-sized
/// values either way. log σ(f) is −softplus(−f): sigmoid itself underflows fp16 below f ≈ −17.
/// A[j][t] is summed directly over j < s ≤ t (one matmul), not as b_t − b_j: fp16 cumulative sums near
/// −1000 have a spacing of 0.5, which the difference of two would carry into every nearby weight.
struct XLSTMANELowering: ANEModelLowering {
    let model: XLSTMModel
    var maxPositions: Int { model.contextLength }
    var layerCount: Int { model.blocks.count }
    var isRecurrent: Bool { true }

    static let stateName = "mlstm_state"
    /// The largest argument of the clamped e^(−m) (see above).
    static let expLimit: Float = 11
    /// What a padding column's input gate and a masked (j > t) entry of A get: e^(−16384) is 0, and the
    /// two together (−32768 plus the gates) stay above fp16's −65,504.
    static let hidden: Float = -16384

    /// The state's shape for `layers` layers of `c`.
    static func stateShape(_ c: XLSTMConfiguration, layers: Int) -> [Int] { [layers * c.numHeads, c.qkHeadDim, 1, c.vHeadDim + 2] }

    func lower(_ f: ANEFunctionLowering) throws {
        let c = model.configuration
        let g = f.g
        let heads = c.numHeads
        let dk = c.qkHeadDim
        let dv = c.vHeadDim
        g.metadata["layers"] = c.numHiddenLayers
        let state = g.readState(Self.stateName, shape: Self.stateShape(c, layers: f.layers.count))
        var slots = [ANETensor]()
        let cell = try MLSTMCellLowering(f, c)
        var x = try f.stream(hidden: c.hiddenSize) { try f.embed(model.embedding) }
        let caps = try c.gateSoftCap.map { cap in
            (inverse: try g.constant("gate_softcap_inverse", [1 / cap], shape: [1, 1, 1, 1]), cap: try g.constant("gate_softcap", [cap], shape: [1, 1, 1, 1]))
        }

        for (l, block) in model.blocks.enumerated() where f.layers.contains(l) {
            // mLSTM: projections (1/√dk folded into q), soft-capped gates, the cell per head, norm, output gate.
            let h = try norm(f, x, block.mlstmNorm, "l\(l)_mlstm_norm")
            let p = try projections(f, h, block.projections, l, c)
            var inputGate = p.i
            var forgetGate = p.f
            if let caps {  // cap · tanh(x / cap)
                inputGate = try g.mul(g.tanh(try g.mul(inputGate, caps.inverse)), caps.cap)
                forgetGate = try g.mul(g.tanh(try g.mul(forgetGate, caps.inverse)), caps.cap)
            }
            // log σ(f) = −softplus(−f).
            let logForget = try g.mul(g.softplus(try g.mul(forgetGate, cell.minusOne)), cell.minusOne)
            var headsOut = [ANETensor]()
            for head in 0..<heads {
                let slot = (l - f.layers.lowerBound) * heads + head
                let read = try g.slice(state.value, axis: 0, begin: slot, end: slot + 1)
                let memory = MLSTMMemory(
                    c: try g.slice(read, axis: 3, begin: 0, end: dv), n: try g.slice(read, axis: 3, begin: dv, end: dv + 1),
                    m: try g.slice(read, axis: 3, begin: dv + 1, end: dv + 2))
                let inputs = MLSTMHeadInputs(
                    q: try g.slice(p.q, axis: 1, begin: head * dk, end: (head + 1) * dk), k: try g.slice(p.k, axis: 1, begin: head * dk, end: (head + 1) * dk),
                    v: try g.slice(p.v, axis: 1, begin: head * dv, end: (head + 1) * dv), i: try g.slice(inputGate, axis: 1, begin: head, end: head + 1),
                    logF: try g.slice(logForget, axis: 1, begin: head, end: head + 1))
                let (out, next) = f.function == .decode ? try cell.step(inputs, memory) : try cell.block(inputs, memory)
                slots.append(try g.concat([next.c, next.n, next.m], axis: 3))
                // The per-head LayerNorm is an RMSNorm of the centred values (same eps), whose fp16-safe form
                // `rmsNorm` has; each head takes its slice of the norm's weight.
                let centred = try g.sub(out, try g.reduceMean(out, axis: 1))
                let weight = Array(block.outputNorm.weight[(head * dv)..<((head + 1) * dv)])
                headsOut.append(try f.rmsNorm(centred, weight, eps: block.outputNorm.eps, "l\(l)_h\(head)_norm"))
            }
            var normed = try g.concat(headsOut, axis: 1)
            if let bias = block.outputNorm.bias { normed = try g.add(normed, try g.constant("l\(l)_multihead_norm_bias", bias, shape: [1, bias.count, 1, 1])) }
            let gated = try g.mul(normed, g.sigmoid(p.o))
            x = try g.add(x, try f.linear(gated, block.outProjection, "l\(l)_out_proj"))

            // SwiGLU feed-forward.
            let h2 = try norm(f, x, block.ffnNorm, "l\(l)_ffn_norm")
            let gate: ANETensor
            let up: ANETensor
            let down: Linear
            switch block.ffn {
            case .single(let gw, let uw, let dw):
                gate = try f.linear(h2, gw, "l\(l)_ffn_gate")
                up = try f.linear(h2, uw, "l\(l)_ffn_up")
                down = dw
            case .fused(let guw, let dw):
                gate = try f.linear(h2, guw, "l\(l)_ffn_gate", part: 0..<c.ffnDim)
                up = try f.linear(h2, guw, "l\(l)_ffn_up", part: c.ffnDim..<(2 * c.ffnDim))
                down = dw
            }
            let act = try g.mul(try g.mul(gate, g.sigmoid(gate)), up)  // SiLU(gate)·up
            x = try g.add(x, try f.linear(act, down, "l\(l)_ffn_down"))
        }
        try g.writeState(state.state, slots.count == 1 ? slots[0] : try g.concat(slots, axis: 0))
        try f.finish(x) { x in
            let final = try norm(f, try f.lastColumn(x), model.outputNorm, "final_norm")
            try f.outputHead(final, model.output.weight, vocabularySize: c.vocabSize, softcap: c.outputLogitSoftCap)
        }
    }

    /// xLSTM's RMSNorm: the shared fp16-safe one, plus the bias when the model has one.
    private func norm(_ f: ANEFunctionLowering, _ x: ANETensor, _ n: XLSTMRMSNorm, _ name: String) throws -> ANETensor {
        let y = try f.rmsNorm(x, n.weight, eps: n.eps, name)
        guard let bias = n.bias else { return y }
        return try f.g.add(y, try f.g.constant(name + "_bias", bias, shape: [1, bias.count, 1, 1]))
    }

    /// q (1/√dk folded in), k, v, the output gate, and the input/forget gate pre-activations (1, heads, 1, S):
    /// one conv each, from separate weights or from row ranges of the fused ones.
    private func projections(_ f: ANEFunctionLowering, _ h: ANETensor, _ p: XLSTMProjections, _ l: Int, _ c: XLSTMConfiguration) throws -> (
        q: ANETensor, k: ANETensor, v: ANETensor, o: ANETensor, i: ANETensor, f: ANETensor
    ) {
        let scale = 1 / Float(c.qkHeadDim).squareRoot()
        switch p {
        case .single(let q, let k, let v, let o, let i, let fg):
            return (
                try f.linear(h, q, "l\(l)_q", scale: scale), try f.linear(h, k, "l\(l)_k"), try f.linear(h, v, "l\(l)_v"),
                try f.linear(h, o, "l\(l)_ogate"), try f.linear(h, i, "l\(l)_igate"), try f.linear(h, fg, "l\(l)_fgate")
            )
        case .fused(let qkvo, let gates):
            let qk = c.qkDim
            let vd = c.vDim
            return (
                try f.linear(h, qkvo, "l\(l)_q", scale: scale, part: 0..<qk), try f.linear(h, qkvo, "l\(l)_k", part: qk..<(2 * qk)),
                try f.linear(h, qkvo, "l\(l)_v", part: (2 * qk)..<(2 * qk + vd)), try f.linear(h, qkvo, "l\(l)_ogate", part: (2 * qk + vd)..<(2 * qk + 2 * vd)),
                try f.linear(h, gates, "l\(l)_igate", part: 0..<c.numHeads), try f.linear(h, gates, "l\(l)_fgate", part: c.numHeads..<(2 * c.numHeads))
            )
        }
    }
}

/// One head's memory: C (1, dk, 1, dv), n (1, dk, 1, 1), m (1, dk, 1, 1) (every row the same value).
struct MLSTMMemory {
    let c, n, m: ANETensor
}

/// One head's cell inputs over S columns: q, k (1, dk, 1, S) (q pre-scaled), v (1, dv, 1, S), the soft-capped
/// input gate i and log σ(forget gate) (1, 1, 1, S).
struct MLSTMHeadInputs {
    let q, k, v, i, logF: ANETensor
}

/// The mLSTM cell of one head as graph ops: `step` (one column) and `block` (the chunkwise form over all S
/// columns, padding columns on the left passing the state through). Constants are made once per function.
struct MLSTMCellLowering {
    let g: ANEGraphBuilder
    let eps, expLimit, minusOne: ANETensor
    /// Chunkwise form only (nil in `decode`).
    let blockConstants: MLSTMBlockConstants?

    init(_ f: ANEFunctionLowering, _ c: XLSTMConfiguration) throws {
        let g = f.g
        self.g = g
        eps = try g.constant("mlstm_eps", [c.eps], shape: [1, 1, 1, 1])
        expLimit = try g.constant("mlstm_exp_limit", [XLSTMANELowering.expLimit], shape: [1, 1, 1, 1])
        minusOne = try g.constant("minus_one", [-1], shape: [1, 1, 1, 1])
        blockConstants = f.function == .prefill ? try MLSTMBlockConstants(f) : nil
    }

    /// h = num / (max(|den|, e^(min(−m, 11))) + eps): the output's normalizer (see XLSTMANELowering).
    func normalized(_ num: ANETensor, _ den: ANETensor, m: ANETensor) throws -> ANETensor {
        let floor = g.exp(try g.minimum(try g.mul(m, minusOne), expLimit))
        return try g.mul(num, g.inverse(try g.add(try g.maximum(g.abs(den), floor), eps)))
    }

    /// One recurrent step (S = 1), as mlstm_recurrent_step_native: the state updated, then read by q.
    func step(_ x: MLSTMHeadInputs, _ s: MLSTMMemory) throws -> (out: ANETensor, next: MLSTMMemory) {
        let decayed = try g.add(x.logF, s.m)  // (1, dk, 1, 1)
        let m = try g.maximum(decayed, x.i)
        let forget = g.exp(try g.sub(decayed, m))  // ≤ 1
        let input = g.exp(try g.sub(x.i, m))  // ≤ 1
        let k = try g.mul(x.k, input)
        let c = try g.add(try g.mul(s.c, forget), try g.matmul(k, x.v, transposeY: true))  // (dk × 1)(1 × dv)
        let n = try g.add(try g.mul(s.n, forget), k)
        let num = try g.matmul(c, x.q, transposeX: true)  // (dv × dk)(dk × 1)
        let den = try g.matmul(n, x.q, transposeX: true)  // (1 × dk)(dk × 1)
        let out = try normalized(num, den, m: try g.slice(m, axis: 1, begin: 0, end: 1))
        return (out, MLSTMMemory(c: c, n: n, m: m))
    }

    /// The chunkwise form over S columns (mlstm_chunkwise_parallel_fw_H, then mlstm_chunkwise_recurrent_fw_C
    /// for the state at the block's end). Padding columns get log σ(f) = 0 and i − 16384: the state passes.
    func block(_ x: MLSTMHeadInputs, _ s: MLSTMMemory) throws -> (out: ANETensor, next: MLSTMMemory) {
        guard let k = blockConstants else { throw ANELMError("ANE lowering: the chunkwise mLSTM cell needs the prefill constants") }
        let (upper, strictUpper, strictLower, causal, onesRow, one) = (k.upper, k.strictUpper, k.strictLower, k.causal, k.onesRow, k.one)
        let (padPenalty, columnMask) = (k.padPenalty, k.columnMask)
        let logF = try g.mul(x.logF, columnMask)  // (1, 1, 1, S)
        let i = try g.add(x.i, padPenalty)
        let m0 = try g.slice(s.m, axis: 1, begin: 0, end: 1)  // (1, 1, 1, 1)
        // b_t = Σ_{s≤t} log σ(f_s); A[j][t] = Σ_{j<s≤t} log σ(f_s) + i_j, masked to j ≤ t.
        let b = try g.matmul(logF, upper)  // (1 × S)(S × S)
        let between = try g.matmul(try g.mul(logF, strictUpper), upper)  // [j][s] = log σ(f_s)·[j < s], summed over s ≤ t
        let iColumn = try g.matmul(i, one, transposeX: true)  // (S × 1)(1 × 1): i_j along rows
        let a = try g.add(try g.add(between, iColumn), causal)  // (1, S_j, 1, S_t)
        let bm = try g.add(b, m0)
        let m = try g.maximum(bm, try g.reduceMax(a, axis: 1))  // (1, 1, 1, S)
        let weights = try g.mul(try g.matmul(x.k, x.q, transposeX: true), g.exp(try g.sub(a, m)))  // (k_j · q_t) e^(A − m_t)
        let interScale = g.exp(try g.sub(bm, m))
        let num = try g.add(try g.mul(try g.matmul(s.c, x.q, transposeX: true), interScale), try g.matmul(x.v, weights))
        let den = try g.add(try g.mul(try g.matmul(s.n, x.q, transposeX: true), interScale), try g.matmul(onesRow, weights))
        let out = try normalized(num, den, m: m)

        // The state at the block's end: A[j][S−1] = Σ_{s>j} log σ(f_s) + i_j as a row.
        let total = try g.slice(b, axis: 3, begin: b.shape[3] - 1, end: b.shape[3])  // (1, 1, 1, 1)
        let last = try g.add(try g.matmul(logF, strictLower), i)  // (1, 1, 1, S)
        let decayed = try g.add(s.m, total)  // (1, dk, 1, 1)
        let mNext = try g.maximum(decayed, try g.reduceMax(last, axis: 3))
        let mScalar = try g.slice(mNext, axis: 1, begin: 0, end: 1)
        let decay = g.exp(try g.sub(decayed, mNext))  // (1, dk, 1, 1), ≤ 1
        let kw = try g.mul(x.k, g.exp(try g.sub(last, mScalar)))  // k_j e^(A[j][S−1] − m'')
        let c = try g.add(try g.mul(s.c, decay), try g.matmul(kw, x.v, transposeY: true))  // (dk × S)(S × dv)
        let n = try g.add(try g.mul(s.n, decay), try g.matmul(kw, onesRow, transposeY: true))  // (dk × S)(S × 1)
        return (out, MLSTMMemory(c: c, n: n, m: mNext))
    }
}

/// The chunkwise cell's constants over S columns: triangles U[r][c] = [r ≤ c], [r < c], [r > c] (1, S, 1, S);
/// the additive mask of A (0 where j ≤ t, −16384 elsewhere); a row of ones (1, 1, 1, S); a 1×1 one (for
/// matmul transposes); the `column_mask` input and the padding columns' input-gate penalty (0 or −16384).
struct MLSTMBlockConstants {
    let upper, strictUpper, strictLower, causal, onesRow, one, columnMask, padPenalty: ANETensor

    init(_ f: ANEFunctionLowering) throws {
        let g = f.g
        let s = f.width
        func matrix(_ name: String, _ value: (Int, Int) -> Float) throws -> ANETensor {
            try g.constant(name, (0..<(s * s)).map { value($0 / s, $0 % s) }, shape: [1, s, 1, s])
        }
        upper = try matrix("mlstm_upper", { $0 <= $1 ? 1 : 0 })
        strictUpper = try matrix("mlstm_strict_upper", { $0 < $1 ? 1 : 0 })
        strictLower = try matrix("mlstm_strict_lower", { $0 > $1 ? 1 : 0 })
        causal = try matrix("mlstm_causal", { $0 <= $1 ? 0 : XLSTMANELowering.hidden })
        onesRow = try g.constant("mlstm_ones_row", [Float](repeating: 1, count: s), shape: [1, 1, 1, s])
        one = try g.constant("mlstm_one", [1], shape: [1, 1, 1, 1])
        columnMask = f.columnMask
        // (mask − 1) · 16384: 0 for a token, −16384 for padding.
        padPenalty = try g.mul(try g.sub(columnMask, one), try g.constant("mlstm_hidden", [-XLSTMANELowering.hidden], shape: [1, 1, 1, 1]))
    }
}
