import CANELMKernels
import Foundation

// BERT (`BertModel`): absolute position and token-type embeddings, post-LayerNorm blocks, exact GELU,
// bidirectional attention. Sequences of a batch are packed as consecutive rows, not padded: linear layers
// see every row at once and attention looks only at the rows of its own sequence, which is what a padded
// batch with an attention mask computes, without the padding.

/// What a sentence-embedding pipeline needs from an encoder: the last hidden state of every token.
public protocol EncoderModel: AnyObject {
    var hiddenSize: Int { get }
    var vocabularySize: Int { get }
    /// The longest sequence (special tokens included) the model has positions for.
    var maxPositions: Int { get }
    /// Several sequences in one pass; per sequence its `tokens.count × hiddenSize` hidden states, row by row.
    func encode(_ sequences: [[Int]]) throws -> [[Float]]
}

/// LayerNorm over rows of `width`: `(x − mean) / √(var + eps) · weight + bias`.
struct LayerNorm {
    let weight: [Float]
    let bias: [Float]
    let eps: Float

    init(_ w: WeightReader, _ prefix: String, width: Int, eps: Float) throws {
        weight = try w.vector(prefix + ".weight", count: width)
        bias = try w.vector(prefix + ".bias", count: width)
        self.eps = eps
    }

    /// In place over `rows` rows.
    func callAsFunction(_ x: UnsafeMutablePointer<Float>, rows: Int, pool: ThreadPool) {
        let width = weight.count
        weight.withUnsafeBufferPointer { w in
            bias.withUnsafeBufferPointer { b in
                pool.parallelRanges(rows, minimum: max(1, Kernels.elementwiseGrain / max(width, 1))) { range in
                    for r in range { Self.normalize(x + r * width, width: width, weight: w, bias: b, eps: eps) }
                }
            }
        }
    }

    /// Two passes (mean, then the squared deviations) as PyTorch's f32 LayerNorm: no cancellation.
    private static func normalize(_ x: UnsafeMutablePointer<Float>, width: Int, weight: UnsafeBufferPointer<Float>, bias: UnsafeBufferPointer<Float>, eps: Float) {
        var sum: Float = 0
        for i in 0..<width { sum += x[i] }
        let mean = sum / Float(width)
        var squares: Float = 0
        for i in 0..<width {
            let d = x[i] - mean
            squares += d * d
        }
        let inverse = 1 / (squares / Float(width) + eps).squareRoot()
        for i in 0..<width { x[i] = (x[i] - mean) * inverse * weight[i] + bias[i] }
    }
}

/// The sequences of one encoder pass, packed as consecutive rows.
struct EncoderBatch {
    let tokens: [Int]
    /// Each sequence's rows.
    let sequences: [Range<Int>]
    /// Each row's position in its sequence.
    let positions: [Int]
    var count: Int { tokens.count }

    init(_ sequences: [[Int]], vocabularySize: Int, maxPositions: Int) throws {
        guard !sequences.isEmpty else { throw ANELMError("encode needs at least one sequence") }
        var tokens: [Int] = []
        var ranges: [Range<Int>] = []
        var positions: [Int] = []
        for sequence in sequences {
            try checkTokens(sequence, vocabularySize: vocabularySize)
            guard sequence.count <= maxPositions else {
                throw ANELMError("a sequence of \(sequence.count) tokens is longer than the model's \(maxPositions) positions")
            }
            ranges.append(tokens.count..<(tokens.count + sequence.count))
            positions += 0..<sequence.count
            tokens += sequence
        }
        self.tokens = tokens
        self.sequences = ranges
        self.positions = positions
    }
}

/// Activations of one encoder pass.
struct EncoderScratch {
    let x: FloatBuffer  // hidden states
    let q, k, v: FloatBuffer
    let attended: FloatBuffer
    let projected: FloatBuffer
    let intermediate: FloatBuffer

    init(rows n: Int, hidden: Int, intermediate: Int) {
        x = FloatBuffer(n * hidden)
        q = FloatBuffer(n * hidden)
        k = FloatBuffer(n * hidden)
        v = FloatBuffer(n * hidden)
        attended = FloatBuffer(n * hidden)
        projected = FloatBuffer(n * hidden)
        self.intermediate = FloatBuffer(n * intermediate)
    }
}

/// Word + position + token-type embeddings, then LayerNorm. Every token is type 0 (one text per sequence).
struct BertEmbeddings {
    let words: WeightMatrix
    let positions: WeightMatrix
    let tokenTypes: WeightMatrix
    let norm: LayerNorm

    func callAsFunction(_ batch: EncoderBatch, into x: UnsafeMutablePointer<Float>, pool: ThreadPool) {
        let width = words.cols
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * width) { scratch in
            guard let position = scratch.baseAddress else { return }
            let type = position + width
            tokenTypes.dequantizeRow(0, into: type)
            for (row, token) in batch.tokens.enumerated() {
                let out = x + row * width
                words.dequantizeRow(token, into: out)
                positions.dequantizeRow(batch.positions[row], into: position)
                // transformers' order: (words + types) + positions.
                Kernels.addInPlace(out, type, count: width)
                Kernels.addInPlace(out, position, count: width)
            }
        }
        norm(x, rows: batch.count, pool: pool)
    }
}

/// Self-attention over each sequence's own rows (no causal mask), its output projection, and the residual
/// LayerNorm: `x = LayerNorm(x + o(attention(x)))`.
struct BertAttention {
    let q, k, v, o: Linear
    let norm: LayerNorm
    let heads: Int
    let headDim: Int

    func callAsFunction(_ x: UnsafeMutablePointer<Float>, batch: EncoderBatch, scratch s: EncoderScratch, pool: ThreadPool) {
        let n = batch.count
        let width = heads * headDim
        Linear.apply([(q, s.q.pointer), (k, s.k.pointer), (v, s.v.pointer)], to: x, tokens: n, pool: pool)
        let scale = 1 / Float(headDim).squareRoot()
        var sequenceOfRow = [Int](repeating: 0, count: n)
        for (index, rows) in batch.sequences.enumerated() { for row in rows { sequenceOfRow[row] = index } }
        let headDim = headDim
        let heads = heads
        let (queries, keys, values, attended) = (s.q.pointer, s.k.pointer, s.v.pointer, s.attended.pointer)
        sequenceOfRow.withUnsafeBufferPointer { sequenceOfRow in
            pool.parallelFor(n * heads) { task in
                let row = task / heads
                let head = task % heads
                let rows = batch.sequences[sequenceOfRow[row]]
                let first = rows.lowerBound * width + head * headDim
                withUnsafeTemporaryAllocation(of: Float.self, capacity: rows.count + headDim) { scratch in
                    anelm_attention(
                        queries + row * width + head * headDim, 1, headDim, keys + first, values + first, Int32(TensorType.f32.rawValue), width,
                        rows.count, scale, 0, scratch.baseAddress, attended + row * width + head * headDim, nil)
                }
            }
        }
        o(s.attended.pointer, tokens: n, into: s.projected.pointer, pool: pool)
        Kernels.addInPlace(x, s.projected.pointer, count: n * width)
        norm(x, rows: n, pool: pool)
    }
}

/// The feed-forward block and its residual LayerNorm: `x = LayerNorm(x + output(gelu(intermediate(x))))`.
struct BertFeedForward {
    let intermediate: Linear
    let output: Linear
    let norm: LayerNorm

    func callAsFunction(_ x: UnsafeMutablePointer<Float>, tokens n: Int, scratch s: EncoderScratch, pool: ThreadPool) {
        intermediate(x, tokens: n, into: s.intermediate.pointer, pool: pool)
        let hidden = s.intermediate.pointer
        pool.parallelRanges(n * intermediate.outFeatures, minimum: Kernels.elementwiseGrain) { r in
            Kernels.gelu(hidden + r.lowerBound, count: r.count)
        }
        output(hidden, tokens: n, into: s.projected.pointer, pool: pool)
        Kernels.addInPlace(x, s.projected.pointer, count: n * output.outFeatures)
        norm(x, rows: n, pool: pool)
    }
}

struct BertLayer {
    let attention: BertAttention
    let feedForward: BertFeedForward

    init(_ w: WeightReader, _ p: String, _ c: BertConfiguration) throws {
        let hidden = c.hiddenSize
        func linear(_ name: String, out: Int, in inFeatures: Int) throws -> Linear {
            try w.linear(p + name + ".weight", bias: p + name + ".bias", out: out, in: inFeatures)
        }
        attention = BertAttention(
            q: try linear("attention.self.query", out: hidden, in: hidden), k: try linear("attention.self.key", out: hidden, in: hidden),
            v: try linear("attention.self.value", out: hidden, in: hidden), o: try linear("attention.output.dense", out: hidden, in: hidden),
            norm: try LayerNorm(w, p + "attention.output.LayerNorm", width: hidden, eps: c.layerNormEps),
            heads: c.numAttentionHeads, headDim: c.headDim)
        feedForward = BertFeedForward(
            intermediate: try linear("intermediate.dense", out: c.intermediateSize, in: hidden),
            output: try linear("output.dense", out: hidden, in: c.intermediateSize),
            norm: try LayerNorm(w, p + "output.LayerNorm", width: hidden, eps: c.layerNormEps))
    }
}

public final class BertModel: EncoderModel {
    public let configuration: BertConfiguration
    let embeddings: BertEmbeddings
    let layers: [BertLayer]
    let pool: ThreadPool

    public var hiddenSize: Int { configuration.hiddenSize }
    public var vocabularySize: Int { configuration.vocabSize }
    public var maxPositions: Int { configuration.maxPositionEmbeddings }

    init(configuration c: BertConfiguration, store: TensorStore, precision: Precision, pool: ThreadPool) throws {
        try c.validate()
        let w = WeightReader(store: store, precision: precision)
        // Checkpoints of BertForMaskedLM and friends keep the encoder under "bert.".
        let prefix = w.has("embeddings.word_embeddings.weight") || !w.has("bert.embeddings.word_embeddings.weight") ? "" : "bert."
        let hidden = c.hiddenSize
        configuration = c
        embeddings = BertEmbeddings(
            words: try w.matrix(prefix + "embeddings.word_embeddings.weight", rows: c.vocabSize, cols: hidden),
            positions: try w.matrix(prefix + "embeddings.position_embeddings.weight", rows: c.maxPositionEmbeddings, cols: hidden),
            tokenTypes: try w.matrix(prefix + "embeddings.token_type_embeddings.weight", rows: c.typeVocabSize, cols: hidden),
            norm: try LayerNorm(w, prefix + "embeddings.LayerNorm", width: hidden, eps: c.layerNormEps))
        layers = try (0..<c.numHiddenLayers).map { try BertLayer(w, prefix + "encoder.layer.\($0).", c) }
        self.pool = pool
    }

    static func load(_ source: ModelSource, _ options: LoadOptions, _ pool: ThreadPool) throws -> EncoderModel {
        try BertModel(configuration: try BertConfiguration(source), store: source.tensors, precision: options.precision, pool: pool)
    }

    public func encode(_ sequences: [[Int]]) throws -> [[Float]] {
        let batch = try EncoderBatch(sequences, vocabularySize: vocabularySize, maxPositions: maxPositions)
        let n = batch.count
        let hidden = configuration.hiddenSize
        let s = EncoderScratch(rows: n, hidden: hidden, intermediate: configuration.intermediateSize)

        // 1. Word, position and token-type embeddings, normalized.
        embeddings(batch, into: s.x.pointer, pool: pool)

        // 2. Each layer: attention, then feed-forward, each added to the stream and normalized (post-LN).
        for layer in layers {
            layer.attention(s.x.pointer, batch: batch, scratch: s, pool: pool)
            layer.feedForward(s.x.pointer, tokens: n, scratch: s, pool: pool)
        }

        // 3. Every token's last hidden state, per sequence.
        return batch.sequences.map { rows in Array(UnsafeBufferPointer(start: s.x.pointer + rows.lowerBound * hidden, count: rows.count * hidden)) }
    }
}
