import Foundation

// xLSTM (the xLSTM-7B "large" architecture, transformers' xLSTMForCausalLM): pre-norm blocks of an mLSTM layer
// (matrix memory C, normalizer n, stabilizer m per head; exponential input gate, sigmoid forget gate, both
// soft-capped) and a SwiGLU feed-forward. Recurrent: the state has a fixed size whatever the sequence length.

/// Tensor names of one block, as transformers' xLSTMForCausalLM saves them.
struct XLSTMTensorNames {
    let prefix: String
    init(_ layer: Int) { prefix = "backbone.blocks.\(layer)." }
    func callAsFunction(_ name: String) -> String { prefix + name }

    static let embedding = "backbone.embeddings.weight"
    static let outputNorm = "backbone.out_norm"
    static let output = "lm_head.weight"
}

/// RMSNorm with an optional bias (`use_bias`), as xLSTMRMSNorm.
struct XLSTMRMSNorm {
    let weight: [Float]
    let bias: [Float]?
    let eps: Float

    init(_ w: WeightReader, _ name: String, width: Int, bias hasBias: Bool, eps: Float) throws {
        weight = try w.vector(name + ".weight", count: width)
        bias = hasBias ? try w.vector(name + ".bias", count: width) : nil
        self.eps = eps
    }

    func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>) {
        let width = weight.count
        rmsNorm(x, weight, eps: eps, rows: rows, width: width, into: out)
        guard let bias else { return }
        for r in 0..<rows { Kernels.addInPlace(out + r * width, bias, count: width) }
    }
}

/// The mLSTM layer's input projections: q, k, v, output-gate and the i/f gate pre-activations (soft-capped).
enum XLSTMProjections {
    case single(q: Linear, k: Linear, v: Linear, o: Linear, i: Linear, f: Linear)
    /// `qkv_opreact` = [q | k | v | o] and `ifgate_preact` = [i | f] along the output dimension.
    case fused(qkvo: Linear, gates: Linear)

    init(_ w: WeightReader, _ name: XLSTMTensorNames, _ c: XLSTMConfiguration) throws {
        let h = c.hiddenSize
        func linear(_ n: String, out: Int, bias: Bool) throws -> Linear {
            try w.linear(name("mlstm_layer.\(n).weight"), bias: bias ? name("mlstm_layer.\(n).bias") : nil, out: out, in: h)
        }
        switch c.weightMode {
        case "fused":
            self = .fused(
                qkvo: try linear("qkv_opreact", out: 2 * c.qkDim + 2 * c.vDim, bias: c.useBias),
                gates: try linear("ifgate_preact", out: 2 * c.numHeads, bias: true))
        default:
            self = .single(
                q: try linear("q", out: c.qkDim, bias: c.useBias), k: try linear("k", out: c.qkDim, bias: c.useBias),
                v: try linear("v", out: c.vDim, bias: c.useBias), o: try linear("ogate_preact", out: c.vDim, bias: c.useBias),
                i: try linear("igate_preact", out: c.numHeads, bias: true), f: try linear("fgate_preact", out: c.numHeads, bias: true))
        }
    }
}

/// The per-head LayerNorm of the mLSTM output (xLSTMMultiHeadLayerNorm): mean/variance over each head's values,
/// then one weight (and bias) over all heads.
struct XLSTMMultiHeadNorm {
    let weight: [Float]
    let bias: [Float]?
    let heads: Int
    let headDim: Int
    let eps: Float

    func callAsFunction(_ x: UnsafeMutablePointer<Float>, rows: Int) {
        let width = heads * headDim
        for r in 0..<rows {
            for h in 0..<heads {
                let p = x + r * width + h * headDim
                var mean: Float = 0
                for j in 0..<headDim { mean += p[j] }
                mean /= Float(headDim)
                var variance: Float = 0
                for j in 0..<headDim { variance += (p[j] - mean) * (p[j] - mean) }
                let scale = 1 / (variance / Float(headDim) + eps).squareRoot()
                for j in 0..<headDim {
                    let i = h * headDim + j
                    p[j] = (p[j] - mean) * scale * weight[i] + (bias?[i] ?? 0)
                }
            }
        }
    }
}

/// The SwiGLU feed-forward: proj_down(silu(proj_up_gate(x)) * proj_up(x)).
enum XLSTMFeedForward {
    case single(gate: Linear, up: Linear, down: Linear)
    /// `proj_up_gate_z` = [gate | up] along the output dimension.
    case fused(gateUp: Linear, down: Linear)

    init(_ w: WeightReader, _ name: XLSTMTensorNames, _ c: XLSTMConfiguration) throws {
        func linear(_ n: String, out: Int, in inFeatures: Int) throws -> Linear {
            try w.linear(name("ffn.\(n).weight"), bias: c.useBias ? name("ffn.\(n).bias") : nil, out: out, in: inFeatures)
        }
        let down = try linear("proj_down", out: c.hiddenSize, in: c.ffnDim)
        if c.weightMode == "fused" {
            self = .fused(gateUp: try linear("proj_up_gate_z", out: 2 * c.ffnDim, in: c.hiddenSize), down: down)
        } else {
            self = .single(
                gate: try linear("proj_up_gate", out: c.ffnDim, in: c.hiddenSize),
                up: try linear("proj_up", out: c.ffnDim, in: c.hiddenSize), down: down)
        }
    }
}

/// One xLSTM block: x + mLSTM(norm(x)), then + FFN(norm(x)).
struct XLSTMBlock {
    let mlstmNorm: XLSTMRMSNorm
    let projections: XLSTMProjections
    let outputNorm: XLSTMMultiHeadNorm
    let outProjection: Linear
    let ffnNorm: XLSTMRMSNorm
    let ffn: XLSTMFeedForward

    init(_ w: WeightReader, layer: Int, _ c: XLSTMConfiguration) throws {
        let name = XLSTMTensorNames(layer)
        mlstmNorm = try XLSTMRMSNorm(w, name("norm_mlstm"), width: c.hiddenSize, bias: c.useBias, eps: c.normEps)
        projections = try XLSTMProjections(w, name, c)
        outputNorm = XLSTMMultiHeadNorm(
            weight: try w.vector(name("mlstm_layer.multihead_norm.weight"), count: c.vDim),
            bias: c.useBias ? try w.vector(name("mlstm_layer.multihead_norm.bias"), count: c.vDim) : nil,
            heads: c.numHeads, headDim: c.vHeadDim, eps: c.normEps)
        outProjection = try w.linear(
            name("mlstm_layer.out_proj.weight"), bias: c.useBias ? name("mlstm_layer.out_proj.bias") : nil, out: c.hiddenSize, in: c.vDim)
        ffnNorm = try XLSTMRMSNorm(w, name("norm_ffn"), width: c.hiddenSize, bias: c.useBias, eps: c.normEps)
        ffn = try XLSTMFeedForward(w, name, c)
    }
}

/// The recurrent memory of every layer for one sequence: per layer and head C (qk × v), n (qk) and m, in f32.
/// Its size is fixed at creation.
public final class XLSTMState: ModelState {
    public private(set) var count = 0
    let layers: [FloatBuffer]
    let floatsPerLayer: Int

    init(layers: Int, floatsPerLayer: Int) {
        self.floatsPerLayer = floatsPerLayer
        self.layers = (0..<layers).map { _ in FloatBuffer(floatsPerLayer) }  // zeros, like xLSTMCache
    }

    func advance(by n: Int) { count += n }

    /// Truncating to 0 starts over; any other position cannot be recovered from a recurrent state.
    public func truncate(to newCount: Int) throws {
        if newCount == count { return }
        guard newCount == 0 else {
            throw ANELMError("an xLSTM state cannot rewind from \(count) to \(newCount) tokens; only a restart is possible")
        }
        for layer in layers { layer.pointer.update(repeating: 0, count: layer.count) }
        count = 0
    }

    public var byteSize: Int { layers.reduce(0) { $0 + $1.count } * MemoryLayout<Float>.size }
}

public final class XLSTMModel: LanguageModel {
    public let configuration: XLSTMConfiguration
    let embedding: WeightMatrix
    let blocks: [XLSTMBlock]
    let outputNorm: XLSTMRMSNorm
    let output: Linear
    let pool: ThreadPool
    public let contextLength: Int

    public var vocabularySize: Int { configuration.vocabSize }

    /// No positional limit exists; this only bounds the token history a session keeps.
    public static let defaultContextLength = 1 << 20

    init(configuration c: XLSTMConfiguration, store: TensorStore, precision: Precision, contextLength: Int?, pool: ThreadPool) throws {
        try c.validate()
        if let contextLength { guard contextLength > 0 else { throw ANELMError("context length must be positive, got \(contextLength)") } }
        let w = WeightReader(store: store, precision: precision)
        configuration = c
        self.pool = pool
        self.contextLength = contextLength ?? Self.defaultContextLength
        embedding = try w.matrix(XLSTMTensorNames.embedding, rows: c.vocabSize, cols: c.hiddenSize)
        blocks = try (0..<c.numHiddenLayers).map { try XLSTMBlock(w, layer: $0, c) }
        // transformers always builds out_norm (weight only), whatever add_out_norm says.
        outputNorm = try XLSTMRMSNorm(w, XLSTMTensorNames.outputNorm, width: c.hiddenSize, bias: false, eps: c.normEps)
        if c.tieWordEmbeddings && !w.has(XLSTMTensorNames.output) {
            output = Linear(weight: embedding, bias: nil)
        } else {
            output = try w.linear(XLSTMTensorNames.output, bias: nil, out: c.vocabSize, in: c.hiddenSize)
        }
    }

    static func load(_ source: ModelSource, _ options: LoadOptions, _ pool: ThreadPool) throws -> LanguageModel {
        return try XLSTMModel(
            configuration: try XLSTMConfiguration(source), store: source.tensors,
            precision: options.precision, contextLength: options.contextLength, pool: pool)
    }

    public func makeState() -> ModelState {
        XLSTMState(layers: configuration.numHiddenLayers, floatsPerLayer: configuration.stateFloatsPerLayer)
    }

    public func forward(_ tokens: [Int], state: ModelState, allPositions: Bool) throws -> [Float] {
        let state = try checked(tokens, state)
        // transformers runs inputs longer than max_inference_chunksize piece by piece through all blocks.
        let pieceSize = configuration.maxInferenceChunkSize
        var logits: [Float] = []
        var start = 0
        while start < tokens.count {
            let end = min(start + pieceSize, tokens.count)
            let pieceLogits = forwardPiece(Array(tokens[start..<end]), sequences: [(0..<(end - start), state)], allPositions: allPositions)
            if allPositions { logits += pieceLogits } else { logits = pieceLogits }
            start = end
        }
        return logits
    }

    /// The sequences' recurrent states advanced in one pass: projections and feed-forward over every row, the
    /// cell per sequence over its own rows. Inputs longer than one piece run one sequence at a time.
    public func forward(batch: [(tokens: [Int], state: ModelState)], allPositions: Bool) throws -> [[Float]] {
        guard !batch.isEmpty else { throw ANELMError("forward needs at least one sequence") }
        let states = try batch.map { try checked($0.tokens, $0.state) }
        for (i, s) in states.enumerated() where states[..<i].contains(where: { $0 === s }) { throw ANELMError("a state appears twice in one batch") }
        guard batch.allSatisfy({ $0.tokens.count <= configuration.maxInferenceChunkSize }) else {
            return try batch.map { try forward($0.tokens, state: $0.state, allPositions: allPositions) }
        }
        var sequences: [(rows: Range<Int>, state: XLSTMState)] = []
        var tokens: [Int] = []
        for (input, state) in zip(batch, states) {
            sequences.append((tokens.count..<(tokens.count + input.tokens.count), state))
            tokens += input.tokens
        }
        let logits = forwardPiece(tokens, sequences: sequences, allPositions: allPositions)
        return splitLogits(logits, rows: sequences.map { allPositions ? $0.rows.count : 1 }, vocabularySize: vocabularySize)
    }

    /// `state` as this model's state, after checking the tokens that will run on it.
    private func checked(_ tokens: [Int], _ state: ModelState) throws -> XLSTMState {
        guard let state = state as? XLSTMState, state.layers.count == blocks.count, state.floatsPerLayer == configuration.stateFloatsPerLayer else {
            throw ANELMError("state does not belong to this xLSTM model")
        }
        try checkTokens(tokens, vocabularySize: vocabularySize)
        guard state.count + tokens.count <= contextLength else {
            throw ANELMError("sequence of \(state.count + tokens.count) tokens exceeds the context length of \(contextLength)")
        }
        return state
    }

    /// One piece of every sequence (`tokens` holds their rows, in order), through all blocks.
    private func forwardPiece(_ tokens: [Int], sequences: [(rows: Range<Int>, state: XLSTMState)], allPositions: Bool) -> [Float] {
        let c = configuration
        let n = tokens.count
        let hidden = c.hiddenSize
        let x = FloatBuffer(n * hidden)  // residual stream
        let xn = FloatBuffer(n * hidden)  // normalized input of a block
        let cell = XLSTMCellInputs(n: n, c)
        let h = FloatBuffer(n * c.vDim)
        let projected = FloatBuffer(n * hidden)
        let gate = FloatBuffer(n * c.ffnDim)
        let up = FloatBuffer(n * c.ffnDim)
        let gateUp = FloatBuffer(c.weightMode == "fused" ? n * 2 * c.ffnDim : 1)

        for (i, token) in tokens.enumerated() { embedding.dequantizeRow(token, into: x.pointer + i * hidden) }

        for (l, block) in blocks.enumerated() {
            // mLSTM: projections, gate soft caps, the cell over the sequence, per-head norm, output gate.
            block.mlstmNorm(x.pointer, rows: n, into: xn.pointer)
            cell.project(block.projections, xn.pointer, pool: pool)
            if let cap = c.gateSoftCap {
                softCap(cell.inputGate.pointer, count: n * c.numHeads, cap: cap)
                softCap(cell.forgetGate.pointer, count: n * c.numHeads, cap: cap)
            }
            for sequence in sequences { runCell(cell, rows: sequence.rows, state: sequence.state.layers[l].pointer, into: h.pointer) }
            block.outputNorm(h.pointer, rows: n)
            for j in 0..<(n * c.vDim) { h.pointer[j] *= sigmoid(cell.outputGate.pointer[j]) }
            block.outProjection(h.pointer, tokens: n, into: projected.pointer, pool: pool)
            Kernels.addInPlace(x.pointer, projected.pointer, count: n * hidden)

            // Feed-forward.
            block.ffnNorm(x.pointer, rows: n, into: xn.pointer)
            switch block.ffn {
            case .single(let g, let u, let down):
                g(xn.pointer, tokens: n, into: gate.pointer, pool: pool)
                u(xn.pointer, tokens: n, into: up.pointer, pool: pool)
                Kernels.siluMul(gate: gate.pointer, up: up.pointer, count: n * c.ffnDim)
                down(gate.pointer, tokens: n, into: projected.pointer, pool: pool)
            case .fused(let gu, let down):
                gu(xn.pointer, tokens: n, into: gateUp.pointer, pool: pool)
                for t in 0..<n {
                    let row = gateUp.pointer + t * 2 * c.ffnDim
                    (gate.pointer + t * c.ffnDim).update(from: row, count: c.ffnDim)
                    (up.pointer + t * c.ffnDim).update(from: row + c.ffnDim, count: c.ffnDim)
                }
                Kernels.siluMul(gate: gate.pointer, up: up.pointer, count: n * c.ffnDim)
                down(gate.pointer, tokens: n, into: projected.pointer, pool: pool)
            }
            Kernels.addInPlace(x.pointer, projected.pointer, count: n * hidden)
        }
        for sequence in sequences { sequence.state.advance(by: sequence.rows.count) }

        // Final norm and logits of each sequence's last row, or of every row.
        let rows = allPositions ? Array(0..<n) : sequences.map { $0.rows.upperBound - 1 }
        for (i, row) in rows.enumerated() { outputNorm(x.pointer + row * hidden, rows: 1, into: xn.pointer + i * hidden) }
        var logits = [Float](repeating: 0, count: rows.count * c.vocabSize)
        logits.withUnsafeMutableBufferPointer { out in
            guard let base = out.baseAddress else { return }
            output(xn.pointer, tokens: rows.count, into: base, pool: pool)
            if let cap = c.outputLogitSoftCap { softCap(base, count: out.count, cap: cap) }
        }
        return logits
    }

    /// The mLSTM cell of one layer over one sequence's `rows` (n of them), as transformers' inference mode runs
    /// it: the chunkwise kernel over the first ⌊n / chunk⌋ · chunk tokens, then the recurrent step for the rest
    /// (and for n == 1).
    private func runCell(_ cell: XLSTMCellInputs, rows: Range<Int>, state: UnsafeMutablePointer<Float>, into h: UnsafeMutablePointer<Float>) {
        let c = configuration
        let chunk = c.chunkSize
        let chunked = rows.count > 1 ? rows.count / chunk * chunk : 0
        let perHead = c.qkHeadDim * c.vHeadDim + c.qkHeadDim + 1
        pool.parallelFor(c.numHeads) { head in
            let headState = MLSTMHeadState(base: state + head * perHead, qkDim: c.qkHeadDim, vDim: c.vHeadDim)
            var t = rows.lowerBound
            while t < rows.lowerBound + chunked {
                mlstmChunk(cell, head: head, start: t, length: chunk, state: headState, into: h)
                t += chunk
            }
            while t < rows.upperBound {
                mlstmStep(cell, head: head, token: t, state: headState, into: h)
                t += 1
            }
        }
    }

    /// One recurrent step (mlstm_recurrent_step_native).
    private func mlstmStep(_ cell: XLSTMCellInputs, head: Int, token t: Int, state s: MLSTMHeadState, into h: UnsafeMutablePointer<Float>) {
        let dk = s.qkDim
        let dv = s.vDim
        let q = cell.query(t, head)
        let k = cell.key(t, head)
        let v = cell.value(t, head)
        let i = cell.inputGateAt(t, head)
        let fLog = logSigmoid(cell.forgetGateAt(t, head))
        let m = s.m.pointee
        let mNew = max(fLog + m, i)
        let fAct = exp(fLog + m - mNew)
        let iAct = exp(i - mNew)
        for d in 0..<dk {
            let row = s.c + d * dv
            Kernels.scale(row, by: fAct, count: dv)
            Kernels.axpy(iAct * k[d], v, row, count: dv)
            s.n[d] = fAct * s.n[d] + iAct * k[d]
        }
        s.m.pointee = mNew
        let scale = 1 / Float(dk).squareRoot()
        let out = h + t * configuration.vDim + head * dv
        out.update(repeating: 0, count: dv)
        var qn: Float = 0
        for d in 0..<dk {
            let qs = q[d] * scale
            Kernels.axpy(qs, s.c + d * dv, out, count: dv)
            qn += qs * s.n[d]
        }
        let denominator = max(abs(qn), exp(-mNew)) + configuration.eps
        Kernels.scale(out, by: 1 / denominator, count: dv)
    }

    /// One chunk of the chunkwise kernel (mlstm_chunkwise_parallel_fw_H for the outputs from the state at the
    /// chunk's start, then mlstm_chunkwise_recurrent_fw_C for the state at its end).
    private func mlstmChunk(_ cell: XLSTMCellInputs, head: Int, start: Int, length L: Int, state s: MLSTMHeadState, into h: UnsafeMutablePointer<Float>) {
        let dk = s.qkDim
        let dv = s.vDim
        let scale = 1 / Float(dk).squareRoot()
        let eps = configuration.eps
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 3 * L) { scratch in
            let b = scratch.baseAddress!
            let logD = b + L
            let weights = b + 2 * L
            // b: cumulative log forget gates within the chunk.
            var sum: Float = 0
            for j in 0..<L {
                sum += logSigmoid(cell.forgetGateAt(start + j, head))
                b[j] = sum
            }
            let m = s.m.pointee
            for t in 0..<L {
                let q = cell.query(start + t, head)
                let mInter = b[t] + m
                var mCombined = mInter
                for j in 0...t {
                    logD[j] = b[t] - b[j] + cell.inputGateAt(start + j, head)
                    mCombined = max(mCombined, logD[j])
                }
                let out = h + (start + t) * configuration.vDim + head * dv
                out.update(repeating: 0, count: dv)
                // Inter-chunk part: the state at the chunk's start, decayed to t.
                let interScale = exp(mInter - mCombined) * scale
                var denominator: Float = 0
                for d in 0..<dk {
                    let qg = q[d] * interScale
                    Kernels.axpy(qg, s.c + d * dv, out, count: dv)
                    denominator += qg * s.n[d]
                }
                // Intra-chunk part: gated attention over the chunk's keys up to t.
                for j in 0...t {
                    weights[j] = Kernels.dot(q, cell.key(start + j, head), count: dk) * scale * exp(logD[j] - mCombined)
                    denominator += weights[j]
                    Kernels.axpy(weights[j], cell.value(start + j, head), out, count: dv)
                }
                let bounded = max(abs(denominator), exp(-mCombined))
                Kernels.scale(out, by: 1 / (bounded + eps), count: dv)
            }
            // State update to the chunk's end.
            let g = b[L - 1]
            var aMax = -Float.infinity
            for j in 0..<L {
                logD[j] = g - b[j] + cell.inputGateAt(start + j, head)  // a_j
                aMax = max(aMax, logD[j])
            }
            let mNext = max(g + m, aMax)
            let decay = exp(g + m - mNext)
            for j in 0..<L { weights[j] = exp(logD[j] - mNext) }
            for d in 0..<dk {
                let row = s.c + d * dv
                Kernels.scale(row, by: decay, count: dv)
                var nd = decay * s.n[d]
                for j in 0..<L {
                    let kd = cell.key(start + j, head)[d] * weights[j]
                    Kernels.axpy(kd, cell.value(start + j, head), row, count: dv)
                    nd += kd
                }
                s.n[d] = nd
            }
            s.m.pointee = mNext
        }
    }
}

/// Views of one head's state inside a layer's buffer: C (qk × v, row-major), then n (qk), then m.
struct MLSTMHeadState {
    let c: UnsafeMutablePointer<Float>
    let n: UnsafeMutablePointer<Float>
    let m: UnsafeMutablePointer<Float>
    let qkDim: Int
    let vDim: Int

    init(base: UnsafeMutablePointer<Float>, qkDim: Int, vDim: Int) {
        c = base
        n = base + qkDim * vDim
        m = n + qkDim
        self.qkDim = qkDim
        self.vDim = vDim
    }
}

/// The mLSTM cell's inputs for `n` tokens: q, k `[n][heads·qk]`, v and the output gate `[n][heads·v]`,
/// gate pre-activations `[n][heads]`.
final class XLSTMCellInputs {
    let n: Int
    let heads, qkHead, vHead: Int
    let q, k, v, outputGate, inputGate, forgetGate: FloatBuffer
    private let fused: FloatBuffer?
    private let fusedGates: FloatBuffer?

    init(n: Int, _ c: XLSTMConfiguration) {
        self.n = n
        heads = c.numHeads
        qkHead = c.qkHeadDim
        vHead = c.vHeadDim
        q = FloatBuffer(n * c.qkDim)
        k = FloatBuffer(n * c.qkDim)
        v = FloatBuffer(n * c.vDim)
        outputGate = FloatBuffer(n * c.vDim)
        inputGate = FloatBuffer(n * c.numHeads)
        forgetGate = FloatBuffer(n * c.numHeads)
        let isFused = c.weightMode == "fused"
        fused = isFused ? FloatBuffer(n * (2 * c.qkDim + 2 * c.vDim)) : nil
        fusedGates = isFused ? FloatBuffer(n * 2 * c.numHeads) : nil
    }

    func project(_ p: XLSTMProjections, _ x: UnsafePointer<Float>, pool: ThreadPool) {
        switch p {
        case .single(let pq, let pk, let pv, let po, let pi, let pf):
            pq(x, tokens: n, into: q.pointer, pool: pool)
            pk(x, tokens: n, into: k.pointer, pool: pool)
            pv(x, tokens: n, into: v.pointer, pool: pool)
            po(x, tokens: n, into: outputGate.pointer, pool: pool)
            pi(x, tokens: n, into: inputGate.pointer, pool: pool)
            pf(x, tokens: n, into: forgetGate.pointer, pool: pool)
        case .fused(let qkvo, let gates):
            guard let fused, let fusedGates else { return }
            qkvo(x, tokens: n, into: fused.pointer, pool: pool)
            gates(x, tokens: n, into: fusedGates.pointer, pool: pool)
            let qk = heads * qkHead
            let vd = heads * vHead
            let width = 2 * qk + 2 * vd
            for t in 0..<n {
                let row = fused.pointer + t * width
                (q.pointer + t * qk).update(from: row, count: qk)
                (k.pointer + t * qk).update(from: row + qk, count: qk)
                (v.pointer + t * vd).update(from: row + 2 * qk, count: vd)
                (outputGate.pointer + t * vd).update(from: row + 2 * qk + vd, count: vd)
                (inputGate.pointer + t * heads).update(from: fusedGates.pointer + t * 2 * heads, count: heads)
                (forgetGate.pointer + t * heads).update(from: fusedGates.pointer + t * 2 * heads + heads, count: heads)
            }
        }
    }

    func query(_ t: Int, _ head: Int) -> UnsafeMutablePointer<Float> { q.pointer + t * heads * qkHead + head * qkHead }
    func key(_ t: Int, _ head: Int) -> UnsafeMutablePointer<Float> { k.pointer + t * heads * qkHead + head * qkHead }
    func value(_ t: Int, _ head: Int) -> UnsafeMutablePointer<Float> { v.pointer + t * heads * vHead + head * vHead }
    func inputGateAt(_ t: Int, _ head: Int) -> Float { inputGate.pointer[t * heads + head] }
    func forgetGateAt(_ t: Int, _ head: Int) -> Float { forgetGate.pointer[t * heads + head] }
}

/// log(sigmoid(x)), stable for large |x| (as torch's logsigmoid).
func logSigmoid(_ x: Float) -> Float { min(x, 0) - log1p(exp(-abs(x))) }

func sigmoid(_ x: Float) -> Float { 1 / (1 + exp(-x)) }
