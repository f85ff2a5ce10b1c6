import Foundation

// The building blocks every decoder-only transformer here is made of (the Llama family, Gemma 3): a
// model's `forward` reads as a short list of these calls. Each block runs over the rows of a
// `DecoderBatch` — one or several sequences, each with its own KV cache and positions — so linear layers
// see every row at once and only attention looks at each sequence on its own.

/// What every decoder-only transformer shares: its KV cache, the checks on its inputs, and the single-sequence
/// and batched entry points. A family subclasses it and writes `run`, its forward pass over a batch's rows.
public class TransformerDecoder: LanguageModel {
    let dimensions: DecoderDimensions
    let cacheElement: TensorType
    let pool: ThreadPool
    /// The family's name in error messages.
    let familyName: String
    public let vocabularySize: Int
    public let contextLength: Int
    /// The LoRA adapters loaded with the model, if any.
    public internal(set) var adapters: LoRAAdapterTable?

    init(familyName: String, dimensions: DecoderDimensions, vocabularySize: Int, contextLength: Int, precision: Precision, pool: ThreadPool) {
        self.familyName = familyName
        self.dimensions = dimensions
        self.vocabularySize = vocabularySize
        self.contextLength = contextLength
        cacheElement = KVCache.element(for: precision)
        self.pool = pool
    }

    public func makeState() -> ModelState { makeState(contextLength: contextLength) }

    /// An empty cache of at most `contextLength` positions that runs with the adapters' current scales.
    public func makeState(contextLength: Int) -> ModelState {
        let cache = dimensions.makeCache(capacity: max(1, min(contextLength, self.contextLength)), element: cacheElement)
        cache.loraScales = adapters?.scales ?? []
        return cache
    }

    public func forward(_ tokens: [Int], state: ModelState, allPositions: Bool) throws -> [Float] {
        run(try batch([(tokens, state)]), allPositions: allPositions)
    }

    public func forward(batch inputs: [(tokens: [Int], state: ModelState)], allPositions: Bool) throws -> [[Float]] {
        let batch = try batch(inputs)
        return batch.split(run(batch, allPositions: allPositions), vocabularySize: vocabularySize, allPositions: allPositions)
    }

    public func forward(batch inputs: [(tokens: [Int], state: ModelState)], wantsLogits: [Bool]) throws -> [[Float]] {
        guard wantsLogits.count == inputs.count else { throw ANELMError("forward got \(wantsLogits.count) logits flags for \(inputs.count) sequences") }
        let batch = try batch(inputs, wantsLogits: wantsLogits)
        return batch.split(run(batch, allPositions: false), vocabularySize: vocabularySize, allPositions: false)
    }

    private func batch(_ inputs: [(tokens: [Int], state: ModelState)], wantsLogits: [Bool]? = nil) throws -> DecoderBatch {
        try DecoderBatch(inputs, wantsLogits: wantsLogits, vocabularySize: vocabularySize, layers: dimensions.layers, model: familyName)
    }

    /// One pass over the batch's rows: the logits of `batch.outputRows(allPositions:)`, in order. Every family
    /// overrides it; the base class has no layers to run.
    func run(_ batch: DecoderBatch, allPositions: Bool) -> [Float] {
        preconditionFailure("\(type(of: self)) does not override TransformerDecoder.run")
    }
}

/// The sizes a decoder's caches and activations follow.
struct DecoderDimensions {
    let layers, hidden, heads, kvHeads, headDim, intermediate: Int

    /// An empty cache for one sequence of at most `capacity` positions.
    func makeCache(capacity: Int, element: TensorType) -> KVCache {
        KVCache(layers: layers, kvHeads: kvHeads, headDim: headDim, capacity: capacity, element: element)
    }

    /// Scratch for a pass over `rows` tokens.
    func scratch(rows: Int) -> DecoderScratch {
        DecoderScratch(rows: rows, hidden: hidden, queryWidth: heads * headDim, keyValueWidth: kvHeads * headDim, intermediate: intermediate)
    }
}

/// The sequences of one forward pass, their new tokens laid out as consecutive rows.
final class DecoderBatch {
    struct Sequence {
        let cache: KVCache
        /// The position of the sequence's first new token (the cache's length before this pass).
        let start: Int
        /// The sequence's rows in the batch.
        let rows: Range<Int>
    }

    let tokens: [Int]
    let sequences: [Sequence]
    /// Per sequence, whether its last token's logits are wanted (without `allPositions`).
    let wantsLogits: [Bool]
    var count: Int { tokens.count }
    /// Each sequence's LoRA scales over its rows.
    let lora: LoRARows

    /// Checks every input (non-empty, ids inside the vocabulary, a cache of this model, each cache once)
    /// and makes room in each cache for its new tokens.
    init(_ inputs: [(tokens: [Int], state: ModelState)], wantsLogits: [Bool]? = nil, vocabularySize: Int, layers: Int, model: String) throws {
        guard !inputs.isEmpty else { throw ANELMError("forward needs at least one sequence") }
        var tokens: [Int] = []
        var sequences: [Sequence] = []
        for input in inputs {
            guard let cache = input.state as? KVCache, cache.layerCount == layers else {
                throw ANELMError("state does not belong to this \(model) model")
            }
            guard !sequences.contains(where: { $0.cache === cache }) else { throw ANELMError("a state appears twice in one batch") }
            try checkTokens(input.tokens, vocabularySize: vocabularySize)
            try cache.grow(by: input.tokens.count)
            sequences.append(Sequence(cache: cache, start: cache.count, rows: tokens.count..<(tokens.count + input.tokens.count)))
            tokens += input.tokens
        }
        self.tokens = tokens
        self.sequences = sequences
        self.wantsLogits = wantsLogits ?? Array(repeating: true, count: sequences.count)
        lora = LoRARows(runs: sequences.map { ($0.rows, $0.cache.loraScales) })
    }

    /// The LoRA scales of `outputRows`: one row per sequence unless every position is returned.
    func outputLoRA(allPositions: Bool) -> LoRARows {
        allPositions ? lora : LoRARows(runs: sequences.enumerated().map { ($0.offset..<($0.offset + 1), $0.element.cache.loraScales) })
    }

    /// Makes this pass's stored keys and values part of each sequence.
    func commit() { for s in sequences { s.cache.commit(s.rows.count) } }

    /// The rows whose logits are returned: each sequence's last (of those that want logits), or all of them.
    func outputRows(allPositions: Bool) -> [Int] {
        allPositions ? Array(0..<count) : zip(sequences, wantsLogits).compactMap { $1 ? $0.rows.upperBound - 1 : nil }
    }

    /// The logits of `outputRows` cut into one run per sequence.
    func split(_ logits: [Float], vocabularySize: Int, allPositions: Bool) -> [[Float]] {
        splitLogits(logits, rows: zip(sequences, wantsLogits).map { allPositions ? $0.rows.count : ($1 ? 1 : 0) }, vocabularySize: vocabularySize)
    }
}

/// Activations of one forward pass, allocated once and reused by every layer.
struct DecoderScratch {
    let x: FloatBuffer  // residual stream
    let xn: FloatBuffer  // normalized input of a block
    let q, k, v: FloatBuffer
    let attended: FloatBuffer  // attention output, before the o projection
    let projected: FloatBuffer  // a block's output, before it joins the residual stream
    let gate, up: FloatBuffer

    init(rows n: Int, hidden: Int, queryWidth: Int, keyValueWidth: Int, intermediate: Int) {
        x = FloatBuffer(n * hidden)
        xn = FloatBuffer(n * hidden)
        q = FloatBuffer(n * queryWidth)
        k = FloatBuffer(n * keyValueWidth)
        v = FloatBuffer(n * keyValueWidth)
        attended = FloatBuffer(n * queryWidth)
        projected = FloatBuffer(n * hidden)
        gate = FloatBuffer(n * intermediate)
        up = FloatBuffer(n * intermediate)
    }
}

/// The token embedding table, optionally scaled (Gemma multiplies by √hidden).
struct TokenEmbedding {
    let table: WeightMatrix
    var scale: Float = 1

    func callAsFunction(_ tokens: [Int], into x: UnsafeMutablePointer<Float>) {
        for (i, token) in tokens.enumerated() { table.dequantizeRow(token, into: x + i * table.cols) }
        if scale != 1 { Kernels.scale(x, by: scale, count: tokens.count * table.cols) }
    }
}

/// Multi-head attention with grouped key/value heads: q/k/v projections, optional per-head q/k RMSNorm
/// (Gemma 3), RoPE, the new keys and values appended to each sequence's cache, causal attention per
/// sequence, the o projection.
struct DecoderAttention {
    let q, k, v, o: Linear
    /// Per-head RMSNorm weights of queries and keys, applied after the projection (Gemma 3).
    var qNorm: [Float]? = nil
    var kNorm: [Float]? = nil
    let shape: AttentionShape

    /// The shape with llama.cpp's rounding when the projections round their activations like ggml (precision `ggml`).
    private var roundingShape: AttentionShape {
        var rounding = shape
        rounding.roundsLikeGGML = q.weight.roundsActivationsLikeGGML
        return rounding
    }

    func callAsFunction(
        _ xn: UnsafePointer<Float>, layer l: Int, batch: DecoderBatch, rope: RotaryEmbedding, normEps: Float,
        scratch s: DecoderScratch, into out: UnsafeMutablePointer<Float>, pool: ThreadPool
    ) {
        let n = batch.count
        let headDim = shape.headDim
        let qWidth = shape.heads * headDim
        let kvWidth = shape.kvHeads * headDim
        Linear.apply([(q, s.q.pointer), (k, s.k.pointer), (v, s.v.pointer)], to: xn, tokens: n, lora: batch.lora, pool: pool)
        if let qNorm { rmsNorm(s.q.pointer, qNorm, eps: normEps, rows: n * shape.heads, width: headDim, into: s.q.pointer, pool: pool) }
        if let kNorm { rmsNorm(s.k.pointer, kNorm, eps: normEps, rows: n * shape.kvHeads, width: headDim, into: s.k.pointer, pool: pool) }
        for sequence in batch.sequences {
            let first = sequence.rows.lowerBound
            let rows = sequence.rows.count
            let queries = s.q.pointer + first * qWidth
            let keys = s.k.pointer + first * kvWidth
            rope.apply(queries: queries, heads: shape.heads, keys: keys, kvHeads: shape.kvHeads, tokens: rows, start: sequence.start, pool: pool)
            sequence.cache.store(layer: l, keys: keys, values: s.v.pointer + first * kvWidth, tokens: rows)
            causalAttention(
                roundingShape, cache: sequence.cache, layer: l, queries: queries, tokens: rows, start: sequence.start,
                into: s.attended.pointer + first * qWidth, pool: pool)
        }
        o(s.attended.pointer, tokens: n, lora: batch.lora, into: out, pool: pool)
    }
}

/// The gated feed-forward block: down(act(gate(x)) · up(x)).
struct GatedMLP {
    enum Activation: String {
        case silu  // SwiGLU: the Llama family
        case geluTanh  // PyTorch's gelu(approximate="tanh"): Gemma 3
        case gelu  // the exact (erf) GELU
    }

    let gate, up, down: Linear
    let activation: Activation

    init(gate: Linear, up: Linear, down: Linear, activation: Activation) {
        self.gate = gate
        self.up = up
        self.down = down
        self.activation = activation
    }

    /// Reads the three projections of a `hidden → intermediate → hidden` block.
    init(_ w: WeightReader, gate: String, up: String, down: String, hidden: Int, intermediate: Int, activation: Activation) throws {
        self.init(
            gate: try w.linear(gate, bias: nil, out: intermediate, in: hidden),
            up: try w.linear(up, bias: nil, out: intermediate, in: hidden),
            down: try w.linear(down, bias: nil, out: hidden, in: intermediate),
            activation: activation)
    }

    func callAsFunction(
        _ xn: UnsafePointer<Float>, tokens n: Int, lora: LoRARows = .none, scratch s: DecoderScratch, into out: UnsafeMutablePointer<Float>, pool: ThreadPool
    ) {
        Linear.apply([(gate, s.gate.pointer), (up, s.up.pointer)], to: xn, tokens: n, lora: lora, pool: pool)
        let activation = activation
        pool.parallelRanges(n * gate.outFeatures, minimum: Kernels.elementwiseGrain) { r in
            let g = s.gate.pointer + r.lowerBound
            let u = s.up.pointer + r.lowerBound
            switch activation {
            case .silu: Kernels.siluMul(gate: g, up: u, count: r.count)
            case .geluTanh: Kernels.geluTanhMul(gate: g, up: u, count: r.count)
            case .gelu: Kernels.geluMul(gate: g, up: u, count: r.count)
            }
        }
        down(s.gate.pointer, tokens: n, lora: lora, into: out, pool: pool)
    }
}

/// The final RMSNorm and the output layer, with the optional soft-cap of the logits (Gemma 3).
struct OutputHead {
    let norm: [Float]
    let eps: Float
    let output: Linear
    var softcap: Float? = nil

    /// The output layer over the embedding table when the file ties them and has no separate head.
    static func linear(_ w: WeightReader, name: String, tiedTo embedding: WeightMatrix, tied: Bool) throws -> Linear {
        if tied && !w.has(name) { return try w.adapted(Linear(weight: embedding, bias: nil), name: name) }
        return try w.linear(name, bias: nil, out: embedding.rows, in: embedding.cols)
    }

    /// Logits of the chosen rows of the residual stream `x`, one vocabulary-sized run per row, in order.
    func logits(_ x: UnsafePointer<Float>, rows: [Int], lora: LoRARows = .none, scratch s: DecoderScratch, pool: ThreadPool) -> [Float] {
        let width = output.inFeatures
        let vocabulary = output.outFeatures
        if let first = rows.first, rows == Array(first..<(first + rows.count)) {
            rmsNorm(x + first * width, norm, eps: eps, rows: rows.count, width: width, into: s.xn.pointer, pool: pool)
        } else {
            for (i, row) in rows.enumerated() { rmsNorm(x + row * width, norm, eps: eps, rows: 1, width: width, into: s.xn.pointer + i * width) }
        }
        var logits = [Float](repeating: 0, count: rows.count * vocabulary)
        logits.withUnsafeMutableBufferPointer { out in
            guard let base = out.baseAddress else { return }
            output(s.xn.pointer, tokens: rows.count, lora: lora, into: base, pool: pool)
            if let softcap { softCap(base, count: out.count, cap: softcap) }
        }
        return logits
    }
}

/// RMSNorm of each of `rows` rows of `width` floats (spread over `pool`, when given, if there are many: prefill).
func rmsNorm(_ x: UnsafePointer<Float>, _ weight: [Float], eps: Float, rows: Int, width: Int, into out: UnsafeMutablePointer<Float>, pool: ThreadPool? = nil) {
    weight.withUnsafeBufferPointer { w in
        let normRows = { (range: Range<Int>) in
            for r in range { Kernels.rmsNorm(x + r * width, weight: w.baseAddress, eps: eps, count: width, into: out + r * width) }
        }
        guard let pool else { return normRows(0..<rows) }
        pool.parallelRanges(rows, minimum: max(1, Kernels.elementwiseGrain / max(width, 1)), normRows)
    }
}

/// `cap · tanh(x / cap)` in place.
func softCap(_ x: UnsafeMutablePointer<Float>, count: Int, cap: Float) {
    for i in 0..<count { x[i] = cap * tanh(x[i] / cap) }
}
