import Foundation

/// Lowers a sentence-embedding pipeline (encoder → pooling → optional L2 normalization) into static-shape
/// `ANEGraph`s, one function per fixed sequence length S, in the style of the decoders' lowering: every
/// activation (1, C, 1, S), every linear a 1×1 conv with fp16 weights, LayerNorm over channels, heads split
/// into per-head slices of the channels (no reshapes or transposes), pooling and normalization in the graph.
///
/// Each function `embed_<S>`:
/// - inputs `tokens`: int32 (S), the text's ids (special tokens included) from column 0, padded on the right
///   with any id (0); `attention_mask` (1, 1, 1, S) fp16: 1 for the text's columns, 0 for padding — the
///   tokenizer's attention mask. The graph turns it into the additive score bias (m − 1)·2¹⁵ (0 or −32,768,
///   exact in fp16: a masked blend, no slice depends on the text's length, issue #20 item 5) and the pooling's weights;
/// - output `embedding` (1, hidden, 1, 1): the sentence embedding as the pipeline's Pooling and Normalize
///   modules make it.
/// A padding column's own state is computed (its query sees the text's keys) but nothing reads it.
public enum ANEEncoderLowering {
    /// The sequence lengths exported by default: short texts run the short function, long ones the long one.
    public static let defaultLengths = [128, 512]

    public static func functionName(length: Int) -> String { "embed_\(length)" }

    /// `requested` capped at the model's positions, without repeats, ascending.
    public static func lengths(_ requested: [Int], maxPositions: Int) throws -> [Int] {
        guard !requested.isEmpty else { throw ANELMError("an embedding export needs at least one sequence length") }
        if let bad = requested.first(where: { $0 < 1 }) { throw ANELMError("sequence lengths must be positive, got \(bad)") }
        return Array(Set(requested.map { min($0, maxPositions) })).sorted()
    }

    /// The functions of `embedder` at `lengths` (see `lengths(_:maxPositions:)`), sharing their weights.
    public static func program(_ embedder: SentenceEmbedder, lengths requested: [Int] = defaultLengths) throws -> ANEProgram {
        let lowering = try lowering(embedder)
        let lengths = try lengths(requested, maxPositions: lowering.maxPositions)
        let weights = ANEWeightCache()
        let functions = try lengths.map { length -> ANEProgram.Function in
            let f = try ANEEncoderFunctionLowering(length: length, weights: weights)
            let states = try lowering.lower(f)
            var pooled = try f.pool(states, embedder.pooling)
            if embedder.normalizes { pooled = try f.l2Normalized(pooled) }
            try f.g.output("embedding", pooled)
            f.g.metadata["sequence_length"] = length
            return ANEProgram.Function(name: functionName(length: length), graph: f.g.build())
        }
        let metadata = [
            "context_length": lengths.last ?? 0, "vocab_size": embedder.encoder.vocabularySize, "layers": lowering.layerCount,
            "dimensions": embedder.dimensions, "max_seq_length": embedder.maxSequenceLength,
        ]
        return try ANEProgram(functions: functions, metadata: metadata)
    }

    static func lowering(_ embedder: SentenceEmbedder) throws -> ANEEncoderModelLowering {
        guard let lowering = ModelRegistry.encoderLowering(embedder.encoder) else {
            throw ANELMError("the ANE lowering has no encoder lowering for \(type(of: embedder.encoder)) (supported: BERT)")
        }
        return lowering
    }
}

/// How an app drives an exported embedding program: the shortest function that holds the text, its tokens
/// padded on the right, the mask 1 over the text.
public struct ANEEmbeddingLayout: Sendable, Equatable {
    /// The functions' sequence lengths, ascending.
    public let lengths: [Int]

    public init(lengths: [Int]) throws {
        guard !lengths.isEmpty, lengths.allSatisfy({ $0 > 0 }) else { throw ANELMError("an embedding program needs positive sequence lengths") }
        self.lengths = lengths.sorted()
    }

    /// The shortest length that holds `count` tokens.
    public func length(for count: Int) throws -> Int {
        guard count > 0, let length = lengths.first(where: { $0 >= count }) else {
            throw ANELMError("\(count) tokens do not fit the embedding functions (lengths \(lengths.map(String.init).joined(separator: ", ")))")
        }
        return length
    }

    /// The named inputs of `tokens` on the function of `length` (token ids as whole floats).
    public func inputs(_ tokens: [Int], length: Int) throws -> [String: [Float]] {
        guard lengths.contains(length), !tokens.isEmpty, tokens.count <= length else {
            throw ANELMError("\(tokens.count) tokens do not fit an embedding function of length \(length)")
        }
        var ids = [Float](repeating: 0, count: length)
        var mask = [Float](repeating: 0, count: length)
        for (i, t) in tokens.enumerated() {
            ids[i] = Float(t)
            mask[i] = 1
        }
        return ["tokens": ids, "attention_mask": mask]
    }
}

/// An encoder family's lowering: the token states (1, hidden, 1, S) from the function's inputs.
protocol ANEEncoderModelLowering {
    var maxPositions: Int { get }
    var layerCount: Int { get }
    func lower(_ f: ANEEncoderFunctionLowering) throws -> ANETensor
}

/// One function being lowered: its builder, length S, inputs, and the blocks encoders share.
final class ANEEncoderFunctionLowering {
    let g = ANEGraphBuilder()
    let length: Int
    let weights: ANEWeightCache
    let tokens: ANETensor
    /// 1 for the text's columns, 0 for padding (1, 1, 1, S).
    let mask: ANETensor
    /// The additive score bias (1, 1, 1, S): (mask − 1)·2¹⁵, 0 or −32,768 (`ANESequenceLayout.masked`).
    let scoreBias: ANETensor

    init(length: Int, weights: ANEWeightCache) throws {
        self.length = length
        self.weights = weights
        tokens = g.input("tokens", shape: [length], dtype: .int32)
        mask = g.input("attention_mask", shape: [1, 1, 1, length])
        let one = try g.constant("one", [1], shape: [1, 1, 1, 1])
        scoreBias = try g.mul(try g.sub(mask, one), try g.constant("masked", [-ANESequenceLayout.masked], shape: [1, 1, 1, 1]))
    }

    private func scalar(_ name: String, _ value: Float) throws -> ANETensor { try g.constant(name, [value], shape: [1, 1, 1, 1]) }

    /// A linear layer as a 1×1 conv with fp16 weights and bias, both times `scale`.
    func linear(_ x: ANETensor, _ layer: Linear, _ name: String, scale: Float = 1) throws -> ANETensor {
        let bits = try weights(name + "_weight") { try ANEFunctionLowering.fp16(layer.weight, scale: scale) }
        let w = g.constant(name + "_weight", fp16Bits: bits, shape: [layer.outFeatures, layer.inFeatures, 1, 1])
        let bias = try layer.bias.map { b in try g.constant(name + "_bias", b.map { $0 * scale }, shape: [b.count]) }
        return try g.conv(x, weight: w, bias: bias, name: name)
    }

    /// LayerNorm over channels, fp16-safe as `ANEFunctionLowering.rmsNorm`: the deviations from the mean are
    /// divided by their largest magnitude (+ 2⁻¹⁴) before they are squared, so no square overflows, and eps
    /// follows that scale ((√eps / max)²; BERT's 1e-12 then underflows to 0 in fp16, which changes nothing
    /// next to a variance ≥ 1/C of the scaled values).
    func layerNorm(_ x: ANETensor, _ norm: LayerNorm, _ name: String) throws -> ANETensor {
        let centered = try g.sub(x, try g.reduceMean(x, axis: 1))
        let inv = g.inverse(try g.add(try g.reduceMax(g.abs(centered), axis: 1), try scalar(name + "_max_floor", 0x1p-14)))
        let scaled = try g.mul(centered, inv)
        let variance = try g.reduceMean(g.square(scaled), axis: 1)
        let epsilon = g.square(try g.mul(inv, try scalar(name + "_eps_sqrt", norm.eps.squareRoot())))
        let normalized = try g.mul(scaled, g.rsqrt(try g.add(variance, epsilon)))
        let c = norm.weight.count
        return try g.add(
            try g.mul(normalized, try g.constant(name + "_weight", norm.weight, shape: [1, c, 1, 1])),
            try g.constant(name + "_bias", norm.bias, shape: [1, c, 1, 1]))
    }

    /// One head's bidirectional attention: scores (1, S, 1, S) = qᵀ·k + bias over the keys, softmax over the
    /// keys, then v·weightsᵀ (1, headDim, 1, S). The score scale is folded into q.
    func attend(_ q: ANETensor, keys: ANETensor, values: ANETensor) throws -> ANETensor {
        let scores = try g.add(try g.matmul(q, keys, transposeX: true), scoreBias)
        return try g.matmul(values, try g.softmax(scores, axis: 3), transposeY: true)
    }

    /// The token states (1, C, 1, S) pooled over the text's columns into (1, C, 1, 1), as sentence-transformers'
    /// Pooling module: the masked mean (sum over the text / its length = mean over S of x·m / mean of m), the
    /// first column, the masked max (padding pushed down by the score bias), or the sum / √length.
    func pool(_ x: ANETensor, _ pooling: Pooling) throws -> ANETensor {
        switch pooling {
        case .cls:
            return try g.slice(x, axis: 3, begin: 0, end: 1)
        case .max:
            return try g.reduceMax(try g.add(x, scoreBias), axis: 3)
        case .mean, .meanSqrtLength:
            let average = try g.reduceMean(try g.mul(x, mask), axis: 3)
            let fraction = try g.reduceMean(mask, axis: 3)  // length / S
            if pooling == .mean { return try g.mul(average, g.inverse(fraction)) }
            // sum / √length = average·S / √(fraction·S) = average·√S / √fraction.
            return try g.mul(try g.mul(average, g.rsqrt(fraction)), try scalar("sqrt_length_\(length)", Float(length).squareRoot()))
        }
    }

    /// `v / ‖v‖` over channels (torch's F.normalize), fp16-safe: v is first divided by max|v| + 2⁻¹⁴, so the
    /// squares stay ≤ 1; ‖v‖ = √(C · mean square). A zero vector stays zero (2⁻²⁴ under the root).
    func l2Normalized(_ v: ANETensor) throws -> ANETensor {
        let c = v.shape[1]
        let scaled = try g.mul(v, g.inverse(try g.add(try g.reduceMax(g.abs(v), axis: 1), try scalar("l2_max_floor", 0x1p-14))))
        let meanSquare = try g.add(try g.reduceMean(g.square(scaled), axis: 1), try scalar("l2_floor", 0x1p-24))
        return try g.mul(try g.mul(scaled, g.rsqrt(meanSquare)), try scalar("l2_inverse_sqrt_channels", 1 / Float(c).squareRoot()))
    }
}

/// BERT (`BertModel`): word + token-type + position embeddings and LayerNorm, then post-LN blocks of
/// bidirectional attention and an exact-erf GELU feed-forward (MIL gelu mode EXACT).
struct BertANELowering: ANEEncoderModelLowering {
    let model: BertModel
    var maxPositions: Int { model.configuration.maxPositionEmbeddings }
    var layerCount: Int { model.layers.count }

    func lower(_ f: ANEEncoderFunctionLowering) throws -> ANETensor {
        let c = model.configuration
        let g = f.g
        let e = model.embeddings
        let hidden = c.hiddenSize
        // The tables laid out (1, hidden, 1, rows): a gather (words) or a static slice (positions 0..<S) along
        // the last axis yields channels-first columns. Token type 0 for every token (one text per sequence).
        let wordBits = try f.weights("word_embeddings") { try ANEFunctionLowering.fp16Transposed(e.words, scale: 1) }
        let words = g.constant("word_embeddings", fp16Bits: wordBits, shape: [1, hidden, 1, e.words.rows])
        let positionBits = try f.weights("position_embeddings") { try ANEFunctionLowering.fp16Transposed(e.positions, scale: 1) }
        var positions = g.constant("position_embeddings", fp16Bits: positionBits, shape: [1, hidden, 1, e.positions.rows])
        if f.length < e.positions.rows { positions = try g.slice(positions, axis: 3, begin: 0, end: f.length) }
        var typeRow = [Float](repeating: 0, count: hidden)
        typeRow.withUnsafeMutableBufferPointer { e.tokenTypes.dequantizeRow(0, into: $0.baseAddress!) }
        // transformers' order: (words + types) + positions.
        var x = try g.add(try g.gather(words, indices: f.tokens, axis: 3), try g.constant("token_type_embedding", typeRow, shape: [1, hidden, 1, 1]))
        x = try f.layerNorm(try g.add(x, positions), e.norm, "embeddings_norm")

        let headDim = c.headDim
        // 1/√headDim is folded into the q projection (and its bias).
        let scale = 1 / Float(headDim).squareRoot()
        for (l, layer) in model.layers.enumerated() {
            let a = layer.attention
            let q = try f.linear(x, a.q, "l\(l)_q", scale: scale)
            let k = try f.linear(x, a.k, "l\(l)_k")
            let v = try f.linear(x, a.v, "l\(l)_v")
            var heads = [ANETensor]()
            for head in 0..<a.heads {
                let (begin, end) = (head * headDim, (head + 1) * headDim)
                heads.append(
                    try f.attend(
                        try g.slice(q, axis: 1, begin: begin, end: end), keys: try g.slice(k, axis: 1, begin: begin, end: end),
                        values: try g.slice(v, axis: 1, begin: begin, end: end)))
            }
            let attended = try f.linear(heads.count == 1 ? heads[0] : try g.concat(heads, axis: 1), a.o, "l\(l)_o")
            x = try f.layerNorm(try g.add(x, attended), a.norm, "l\(l)_attention_norm")

            let ff = layer.feedForward
            let activated = g.gelu(try f.linear(x, ff.intermediate, "l\(l)_intermediate"), tanhApproximation: false)
            x = try f.layerNorm(try g.add(x, try f.linear(activated, ff.output, "l\(l)_output")), ff.norm, "l\(l)_output_norm")
        }
        return x
    }
}
