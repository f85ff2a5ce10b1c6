import CANELMKernels
import Foundation

/// Choices of the ANE lowering.
public struct ANELoweringOptions: Sendable {
    /// The fixed context N of every function (the KV cache state holds N positions per head).
    public var contextLength = 512
    /// Tokens per `prefill` call (the block B; a shorter prompt tail is padded).
    public var prefillBlock = 64
    /// Most channels of one output-layer conv: the ANE rejects wider conv outputs (16,384).
    public var maxOutputChannels = 16_384
    /// The layers this program holds (a chunk of a model split into several packages); nil: all. A chunk
    /// without the first layer takes `hidden_in` instead of token ids, one without the last outputs
    /// `hidden_out` instead of logits.
    public var layers: Range<Int>?
    public init(contextLength: Int = 512, prefillBlock: Int = 64, maxOutputChannels: Int = 16_384, layers: Range<Int>? = nil) {
        self.contextLength = contextLength
        self.prefillBlock = prefillBlock
        self.maxOutputChannels = maxOutputChannels
        self.layers = layers
    }
}

/// The functions of a lowered model: `decode` runs one token, `prefill` a block of tokens.
public enum ANEFunction: String, Sendable, CaseIterable {
    case decode, prefill
}

/// Lowers a loaded model into static-shape `ANEGraph`s in the style of Apple's ml-ane-transformers:
/// every linear a 1×1 conv with fp16 weights, heads split into explicit per-head ops, no reshapes or
/// transposes on the hot path, the KV cache as states updated in place.
///
/// Both functions are one graph shape over S columns (S = 1 for `decode`, the prefill block B for
/// `prefill`), context N:
/// - inputs `token` (decode) / `tokens` (prefill): int32 (S); `position_onehot` (1, S, 1, N): row s is the
///   one-hot of column s's position, all zero for a padding column; `attention_mask` (1, S, 1, N): additive,
///   0 where column s may attend, -32768 elsewhere; Gemma 3 also `sliding_mask`, the same for its local layers;
/// - outputs per output chunk `logits_<i>` (1, chunk_i, 1, 1), `top_value_<i>` (1, 1, 1, 1) and `top_index_<i>`
///   (1, 1, 1, 1) int32, the chunk's argmax (the app picks across chunks): all for the last column only — the block's real tokens are right-aligned, so the last column is the
///   last real token, whose logits are what an app needs next (all B columns' logits would cost B output
///   layers per call).
/// A recurrent model (xLSTM, `XLSTMANELowering`) takes only the token ids and, in `prefill`, `column_mask`
/// (1, 1, 1, B): 1 for a real column, 0 for the padding left of a partial block; its state has no positions.
/// `ANESequenceLayout` builds these inputs.
public enum ANELowering {
    /// Architectures this lowering handles: those of the registry's decoder families that have an ANE lowering.
    public static var supportedArchitectures: [String] { ModelRegistry.families.filter { $0.aneLowering != nil }.flatMap(\.architectures) }

    /// The graph of one function of `loaded`.
    public static func graph(_ loaded: LoadedModel, _ function: ANEFunction, options: ANELoweringOptions = ANELoweringOptions()) throws -> ANEGraph {
        try graph(try lowering(loaded), function, options: options, weights: ANEWeightCache())
    }

    /// The decode graph of `loaded`; a model outside the supported families is an error naming its architecture.
    public static func decodeGraph(_ loaded: LoadedModel, options: ANELoweringOptions = ANELoweringOptions()) throws -> ANEGraph {
        try graph(loaded, .decode, options: options)
    }

    static func lowering(_ loaded: LoadedModel) throws -> ANEModelLowering {
        // The lowering writes the linear weights as they are: adapters must be in them, not beside them.
        if let adapter = loaded.model.adapters?.entries.first(where: { !$0.merged }) {
            throw ANELMError("LoRA adapter \(adapter.path) is a side path; the ANE lowering needs it merged into the weights (--lora-merge)")
        }
        guard let lowering = ModelRegistry.family(named: loaded.architecture)?.aneLowering?(loaded.model) else {
            throw ANELMError(
                "ANE lowering does not support architecture \(quoted(loaded.architecture)) (supported: \(supportedArchitectures.joined(separator: ", ")))")
        }
        return lowering
    }

    static func graph(_ lowering: ANEModelLowering, _ function: ANEFunction, options: ANELoweringOptions, weights: ANEWeightCache) throws -> ANEGraph {
        let n = min(options.contextLength, lowering.maxPositions)
        guard n > 0 else { throw ANELMError("ANE lowering needs a positive context length, got \(options.contextLength)") }
        guard options.prefillBlock > 0, options.prefillBlock <= n else {
            throw ANELMError("the prefill block must be between 1 and the context length \(n), got \(options.prefillBlock)")
        }
        let width = function == .decode ? 1 : options.prefillBlock
        let layers = options.layers ?? 0..<lowering.layerCount
        guard !layers.isEmpty, layers.lowerBound >= 0, layers.upperBound <= lowering.layerCount else {
            throw ANELMError("layers \(layers) are not a non-empty range of the model's \(lowering.layerCount) layers")
        }
        let f = try ANEFunctionLowering(
            function: function, width: width, context: n, options: options, weights: weights,
            layers: layers, layerCount: lowering.layerCount, positional: !lowering.isRecurrent)
        try lowering.lower(f)
        try f.writeCache()
        f.g.metadata["context_length"] = n
        if lowering.isRecurrent { f.g.metadata["recurrent"] = 1 }
        f.g.metadata["prefill_block"] = options.prefillBlock
        f.g.metadata["block"] = width
        return f.g.build()
    }

    /// The output layer's channel ranges: as few chunks as keep each ≤ `maxChannels`, sizes balanced.
    public static func outputChunks(vocabularySize: Int, maxChannels: Int) throws -> [Range<Int>] {
        guard vocabularySize > 0, maxChannels > 0 else { throw ANELMError("cannot chunk \(vocabularySize) channels by \(maxChannels)") }
        let count = (vocabularySize + maxChannels - 1) / maxChannels
        let base = vocabularySize / count
        let extra = vocabularySize % count
        var start = 0
        return (0..<count).map { i in
            let size = base + (i < extra ? 1 : 0)
            defer { start += size }
            return start..<(start + size)
        }
    }
}

/// A model family's lowering: the layers between the inputs and the output head.
protocol ANEModelLowering {
    /// Positions the model was trained for (caps the context).
    var maxPositions: Int { get }
    var layerCount: Int { get }
    /// A recurrent model (xLSTM): its state has no positions, so its functions take no `position_onehot`
    /// or masks (`ANESequenceLayout` feeds `column_mask` instead) and the context only bounds a session.
    var isRecurrent: Bool { get }
    func lower(_ f: ANEFunctionLowering) throws
}

extension ANEModelLowering {
    var isRecurrent: Bool { false }
}

/// fp16 weights converted once per program, so both functions' same-named constants share one buffer
/// (the contract: same name, same values) and the model is dequantized once.
final class ANEWeightCache {
    private var bits: [String: [UInt16]] = [:]

    func callAsFunction(_ name: String, _ make: () throws -> [UInt16]) rethrows -> [UInt16] {
        if let b = bits[name] { return b }
        let b = try make()
        bits[name] = b
        return b
    }
}

/// One function being lowered: its graph builder, S columns, context N, the common inputs, and the
/// building blocks every model family shares.
final class ANEFunctionLowering {
    let g = ANEGraphBuilder()
    let function: ANEFunction
    let width: Int, context: Int
    let options: ANELoweringOptions
    let weights: ANEWeightCache
    /// The positional inputs (attention models; declared first, in this order, by `init`).
    private(set) lazy var placement: ANETensor = g.input("position_onehot", shape: [1, width, 1, context])
    private(set) lazy var mask: ANETensor = g.input("attention_mask", shape: [1, width, 1, context])
    /// Token ids: an input of the first chunk only.
    private(set) lazy var tokens: ANETensor = g.input(function == .decode ? "token" : "tokens", shape: [width], dtype: .int32)
    /// 1 where the cache keeps its column, 0 where this call writes one: 1 − max over rows of the placement
    /// (exact on 0/1 values).
    var keep: ANETensor {
        get throws {
            guard let keepColumns else { throw ANELMError("ANE lowering: a recurrent function has no KV cache placement") }
            return keepColumns
        }
    }
    private var keepColumns: ANETensor?
    /// A recurrent model's real columns (1, 1, 1, S): 1 for a token, 0 for the padding left of a partial block.
    private(set) lazy var columnMask: ANETensor = g.input("column_mask", shape: [1, 1, 1, width])
    /// The KV cache state once declared: its state index, its read value, KV heads per layer, and each
    /// slot's updated value once this function wrote it.
    private var cacheState: (state: Int, value: ANETensor, kvHeads: Int, slots: [ANETensor?])?

    /// The layers this function lowers, of `layerCount`.
    let layers: Range<Int>
    let layerCount: Int
    var isFirstChunk: Bool { layers.lowerBound == 0 }
    var isLastChunk: Bool { layers.upperBound == layerCount }

    init(
        function: ANEFunction, width: Int, context: Int, options: ANELoweringOptions, weights: ANEWeightCache, layers: Range<Int>, layerCount: Int,
        positional: Bool = true
    ) throws {
        self.function = function
        self.width = width
        self.context = context
        self.options = options
        self.weights = weights
        self.layers = layers
        self.layerCount = layerCount
        if positional {  // the inputs first, in this order, as before recurrent models existed
            _ = placement
            _ = mask
            keepColumns = try g.sub(try g.constant("one", [1], shape: [1, 1, 1, 1]), try g.reduceMax(placement, axis: 1))
        }
    }

    /// The second additive mask (Gemma's sliding-window layers), same shape as `attention_mask`.
    private(set) lazy var slidingMask: ANETensor = g.input("sliding_mask", shape: [1, width, 1, context])

    // MARK: Chunks

    /// The residual stream entering this chunk: the token embeddings (`embed`) in the first chunk, else
    /// the input `hidden_in` (1, hidden, 1, S), the previous chunk's `hidden_out`.
    func stream(hidden: Int, embed: () throws -> ANETensor) throws -> ANETensor {
        isFirstChunk ? try embed() : g.input("hidden_in", shape: [1, hidden, 1, width])
    }

    /// The residual stream leaving this chunk: through `head` in the last chunk, else the output `hidden_out`.
    func finish(_ x: ANETensor, head: (ANETensor) throws -> Void) throws {
        if isLastChunk { try head(x) } else { try g.output("hidden_out", x) }
    }

    // MARK: Embedding and RoPE

    /// Token embeddings (1, hidden, 1, S), times `scale`: the table is the const `embedding` laid out
    /// (1, hidden, 1, vocab) so that a MIL `gather` along the last axis yields channels-first columns.
    func embed(_ table: WeightMatrix, scale: Float = 1) throws -> ANETensor {
        let bits = try weights("embedding") { try fp16Transposed(table, scale: scale) }
        let t = g.constant("embedding", fp16Bits: bits, shape: [1, table.cols, 1, table.rows])
        return try g.gather(t, indices: tokens, axis: 3)
    }

    /// cos/sin of the columns' positions (1, headDim, 1, S): tables of every position as consts
    /// (1, headDim, 1, N), the columns picked by a matmul with the placement (exact: one 1 per row;
    /// a padding column gets 0). rotate_half's sign is folded into the sin table.
    func ropeTables(_ name: String, inverseFrequencies inv: [Float], headDim: Int) throws -> (cos: ANETensor, sin: ANETensor) {
        let n = context
        let half = headDim / 2
        var cosTable = [Float](repeating: 0, count: headDim * n)
        var sinTable = cosTable
        for d in 0..<headDim {
            for p in 0..<n {
                let angle = Float(p) * inv[d % half]
                cosTable[d * n + p] = Float(cos(Double(angle)))
                sinTable[d * n + p] = Float(sin(Double(angle))) * (d < half ? -1 : 1)
            }
        }
        let c = try g.matmul(try g.constant(name + "_cos", cosTable, shape: [1, headDim, 1, n]), placement, transposeY: true)
        let s = try g.matmul(try g.constant(name + "_sin", sinTable, shape: [1, headDim, 1, n]), placement, transposeY: true)
        return (c, s)
    }

    /// RoPE of one head (1, headDim, 1, S) in rotate_half form: v·cos + [v₂, v₁]·sin.
    func rope(_ v: ANETensor, _ t: (cos: ANETensor, sin: ANETensor)) throws -> ANETensor {
        let headDim = v.shape[1]
        let half = headDim / 2
        let rotated = try g.concat([try g.slice(v, axis: 1, begin: half, end: headDim), try g.slice(v, axis: 1, begin: 0, end: half)], axis: 1)
        return try g.add(try g.mul(v, t.cos), try g.mul(rotated, t.sin))
    }

    // MARK: Norms and linears

    /// RMSNorm over channels from ANE-friendly ops, fp16-safe: residual streams have outliers in the
    /// hundreds (SmolLM2) or thousands (Gemma), whose squares overflow fp16 (max 65,504). So x is first
    /// divided by max|x| (≤ 1 after, squares ≤ 1, their mean ≥ 1/C stays a normal fp16 number); the norm is
    /// scale-invariant, so only eps must follow the scale: eps / max|x|², computed as (√eps / max|x|)² so
    /// that neither a small max|x| (1/max|x|² would overflow) nor a small eps (an fp16 constant below
    /// 6e-8 is 0) is lost. `eps` is the model's eps times the square of any scale the lowering put on x.
    /// The divisor is max|x| + 2⁻¹⁴ (fp16's smallest normal): any positive scale leaves the norm unchanged,
    /// and an all-zero x (a zero embedding row, as pad tokens have) must not divide by zero.
    func rmsNorm(_ x: ANETensor, _ weight: [Float], eps: Float, _ name: String) throws -> ANETensor {
        let floor = try g.constant(name + "_max_floor", [0x1p-14], shape: [1, 1, 1, 1])
        let inv = g.inverse(try g.add(try g.reduceMax(g.abs(x), axis: 1), floor))
        let scaled = try g.mul(x, inv)
        let meanSquare = try g.reduceMean(g.square(scaled), axis: 1)
        let epsilon = g.square(try g.mul(inv, try g.constant(name + "_eps_sqrt", [eps.squareRoot()], shape: [1, 1, 1, 1])))
        let normalized = try g.mul(scaled, g.rsqrt(try g.add(meanSquare, epsilon)))
        return try g.mul(normalized, try g.constant(name + "_weight", weight, shape: [1, weight.count, 1, 1]))
    }

    /// A linear layer as a 1×1 conv with fp16 weights (dequantized from the stored type), optionally
    /// scaled and with each head's rows un-permuted from adjacent-pair to rotate_half order.
    /// `part` takes only those output rows (one projection of a fused weight, as xLSTM's `weight_mode: fused`).
    func linear(_ x: ANETensor, _ layer: Linear, _ name: String, scale: Float = 1, permuteHeads headDim: Int? = nil, part: Range<Int>? = nil) throws -> ANETensor {
        let range = part ?? 0..<layer.outFeatures
        guard range.lowerBound >= 0, range.upperBound <= layer.outFeatures, !range.isEmpty else {
            throw ANELMError("ANE lowering: rows \(range) of the \(layer.outFeatures)-row weight \(name)")
        }
        let rows = range.count
        let cols = layer.inFeatures
        var order = Array(range)
        if let headDim {
            let half = headDim / 2
            order = (0..<rows).map { r in
                let head = r / headDim
                let j = r % headDim
                return range.lowerBound + head * headDim + (j < half ? 2 * j : 2 * (j - half) + 1)
            }
        }
        let bits = try weights(name + "_weight") { try fp16(layer.weight, rows: 0..<rows, order: order, scale: scale) }
        let w = g.constant(name + "_weight", fp16Bits: bits, shape: [rows, cols, 1, 1])
        let bias = try layer.bias.map { b in try g.constant(name + "_bias", order.map { b[$0] * scale }, shape: [rows]) }
        return try g.conv(x, weight: w, bias: bias, name: name)
    }

    // MARK: Attention

    /// The KV cache of this function's layers as one state, `kv_cache` (2·layers·kvHeads, headDim, 1, N)
    /// (a chunk's layers counted from its first): slot l·kvHeads + h
    /// holds layer l's keys of KV head h, slot (layers + l)·kvHeads + h its values (keys of every layer
    /// first, as ANEMLL's (2·layers, …) cache). One state of one shape in every function and every chunk:
    /// Core ML models with three or more states, or states of different shapes, are reported to fail on
    /// the ANE (issue #20), so Gemma 3's sliding-window layers keep full-context slots and mask instead.
    /// Each slot (1, headDim, 1, N) is a static slice of the read; the updated slots are concatenated and
    /// written back once, after the last layer (`writeCache`).
    func declareCache(layers: Int, kvHeads: Int, headDim: Int) throws {
        guard cacheState == nil else { throw ANELMError("ANE lowering: the KV cache is declared twice") }
        let shape = [2 * layers * kvHeads, headDim, 1, context]
        let read = g.readState(Self.cacheName, shape: shape)
        cacheState = (read.state, read.value, kvHeads, [ANETensor?](repeating: nil, count: shape[0]))
    }

    static let cacheName = "kv_cache"

    /// Writes this call's key (or value) columns of one layer's KV head into its cache slot and returns
    /// the updated slot (1, headDim, 1, N): slot·keep + new·placement, a masked blend at the call's
    /// positions (no dynamic slice). The (headDim × S)·(S × N) product puts column s at its position exactly
    /// (every output sums one product x·1 and zeros); padding columns have all-zero placement rows and write
    /// nothing, and `keep` leaves every other position as it was.
    func cache(layer: Int, kvHead: Int, values isValue: Bool, _ new: ANETensor) throws -> ANETensor {
        guard var c = cacheState else { throw ANELMError("ANE lowering: cache(layer:) before declareCache") }
        let layers = c.slots.count / (2 * c.kvHeads)
        let slot = ((isValue ? layers : 0) + layer) * c.kvHeads + kvHead
        guard layer >= 0, layer < layers, kvHead >= 0, kvHead < c.kvHeads, c.slots[slot] == nil else {
            throw ANELMError("ANE lowering: KV cache slot of layer \(layer), head \(kvHead) is outside the cache or written twice")
        }
        let old = try g.slice(c.value, axis: 0, begin: slot, end: slot + 1)
        let updated = try g.add(try g.mul(old, try keep), try g.matmul(new, placement))
        c.slots[slot] = updated
        cacheState = c
        return updated
    }

    /// Writes the cache state back: updated slots, and the read value of any slot this function did not
    /// touch (a chunk holding only some layers), concatenated in slot order.
    func writeCache() throws {
        guard let c = cacheState else { return }
        var parts = [ANETensor]()
        var untouched: Int?
        func flush(_ end: Int) throws {
            if let start = untouched { parts.append(try g.slice(c.value, axis: 0, begin: start, end: end)) }
            untouched = nil
        }
        for (i, slot) in c.slots.enumerated() {
            if let slot {
                try flush(i)
                parts.append(slot)
            } else if untouched == nil {
                untouched = i
            }
        }
        try flush(c.slots.count)
        try g.writeState(c.state, parts.count == 1 ? parts[0] : try g.concat(parts, axis: 0))
    }

    /// One head's attention: scores (1, S, 1, N) = qᵀ·K + mask, softmax over positions, then V·weightsᵀ
    /// (1, headDim, 1, S). The score scale is folded into q by the caller.
    func attend(_ q: ANETensor, keys: ANETensor, values: ANETensor, mask: ANETensor) throws -> ANETensor {
        let scores = try g.add(try g.matmul(q, keys, transposeX: true), mask)
        let weights = try g.softmax(scores, axis: 3)
        return try g.matmul(values, weights, transposeY: true)
    }

    // MARK: Output

    /// The last column (1, C, 1, 1): the last real token of a right-aligned block.
    func lastColumn(_ x: ANETensor) throws -> ANETensor {
        width == 1 ? x : try g.slice(x, axis: 3, begin: width - 1, end: width)
    }

    /// The output layer over the normed last column, in chunks ≤ maxOutputChannels: outputs `logits_<i>`
    /// (soft-capped as cap·tanh(logits/cap) when `softcap` is set), and per chunk its largest logit
    /// `top_value_<i>` (fp16) and that logit's index in the chunk `top_index_<i>` (int32), from `topk` with
    /// k = 1. The app picks the token across chunks (`ANESequenceLayout.result`): reduce_argmax and
    /// gather_along_axis were placed on the CPU in device compute-plan audits, topk per chunk is what
    /// device projects moved to (issue #20). The pick reads the raw logits: the cap is monotonic, and fp16
    /// tanh near ±1 could tie distinct logits.
    func outputHead(_ x: ANETensor, _ matrix: WeightMatrix, vocabularySize: Int, softcap: Float? = nil) throws {
        let hidden = x.shape[1]
        let chunks = try ANELowering.outputChunks(vocabularySize: vocabularySize, maxChannels: options.maxOutputChannels)
        g.metadata["vocab_size"] = vocabularySize
        g.metadata["output_chunks"] = chunks.count
        let caps = try softcap.map { cap in
            (inverse: try g.constant("softcap_inverse", [1 / cap], shape: [1, 1, 1, 1]), cap: try g.constant("softcap", [cap], shape: [1, 1, 1, 1]))
        }
        for (i, range) in chunks.enumerated() {
            let bits = try weights("output_\(i)") { try fp16(matrix, rows: range) }
            var logits = try g.conv(x, weight: g.constant("output_\(i)", fp16Bits: bits, shape: [range.count, hidden, 1, 1]))
            let top = try g.top1(logits, axis: 1)
            try g.output("top_value_\(i)", top.value)
            try g.output("top_index_\(i)", top.index)
            if let caps { logits = try g.mul(g.tanh(try g.mul(logits, caps.inverse)), caps.cap) }
            try g.output("logits_\(i)", logits)
        }
    }

    // MARK: Weights

    /// Rows of a weight matrix as fp16 bits, row i taken from `order[i]` and multiplied by `scale`.
    func fp16(_ m: WeightMatrix, rows: Range<Int>? = nil, order: [Int]? = nil, scale: Float = 1) throws -> [UInt16] {
        try Self.fp16(m, rows: rows, order: order, scale: scale)
    }

    static func fp16(_ m: WeightMatrix, rows: Range<Int>? = nil, order: [Int]? = nil, scale: Float = 1) throws -> [UInt16] {
        let range = rows ?? 0..<m.rows
        guard range.lowerBound >= 0, range.upperBound <= m.rows else { throw ANELMError("rows \(range) outside a \(m.rows)-row matrix") }
        var out = [UInt16](repeating: 0, count: range.count * m.cols)
        var row = [Float](repeating: 0, count: m.cols)
        for (i, r) in range.enumerated() {
            let source = order?[r] ?? r
            row.withUnsafeMutableBufferPointer { m.dequantizeRow(source, into: $0.baseAddress!) }
            if scale != 1 { for j in row.indices { row[j] *= scale } }
            row.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { anelm_convert_f32_to_f16(src.baseAddress, $0.baseAddress! + i * m.cols, m.cols) }
            }
        }
        return out
    }

    /// The matrix transposed (cols × rows) as fp16 bits, times `scale`.
    func fp16Transposed(_ m: WeightMatrix, scale: Float) throws -> [UInt16] { try Self.fp16Transposed(m, scale: scale) }

    static func fp16Transposed(_ m: WeightMatrix, scale: Float) throws -> [UInt16] {
        let rowMajor = try fp16(m, scale: scale)
        var out = [UInt16](repeating: 0, count: rowMajor.count)
        for r in 0..<m.rows { for c in 0..<m.cols { out[c * m.rows + r] = rowMajor[r * m.cols + c] } }
        return out
    }
}

/// The Llama family (Llama, SmolLM2, Mistral, Qwen2): pre-norm attention and SwiGLU MLP.
struct LlamaANELowering: ANEModelLowering {
    let model: LlamaModel
    var maxPositions: Int { model.configuration.maxPositionEmbeddings }
    var layerCount: Int { model.layers.count }

    func lower(_ f: ANEFunctionLowering) throws {
        let c = model.configuration
        let g = f.g
        let headDim = c.headDim
        let eps = c.rmsNormEps
        g.metadata["layers"] = c.numHiddenLayers
        try f.declareCache(layers: f.layers.count, kvHeads: c.numKeyValueHeads, headDim: headDim)
        var x = try f.stream(hidden: c.hiddenSize) { try f.embed(model.embedding.table) }
        let rope = try f.ropeTables("rope", inverseFrequencies: model.rope.inverseFrequencies, headDim: headDim)

        let group = c.numAttentionHeads / c.numKeyValueHeads
        // 1/√headDim is folded into the q projection (and its bias): one op fewer per head.
        let scale = 1 / Float(headDim).squareRoot()
        // GGUF `llama` files permute q/k rows so RoPE pairs adjacent dims; un-permute them to rotate_half
        // order, which slices express. q·k is unchanged because q and k get the same permutation.
        let permute = model.rope.style == .adjacent ? headDim : nil
        for (l, layer) in model.layers.enumerated() where f.layers.contains(l) {
            let a = layer.attention
            let slot = l - f.layers.lowerBound
            let h = try f.rmsNorm(x, layer.attentionNorm, eps: eps, "l\(l)_attn_norm")
            let q = try f.linear(h, a.q, "l\(l)_q", scale: scale, permuteHeads: permute)
            let k = try f.linear(h, a.k, "l\(l)_k", permuteHeads: permute)
            let v = try f.linear(h, a.v, "l\(l)_v")
            var keys = [ANETensor]()
            var values = [ANETensor]()
            for kv in 0..<c.numKeyValueHeads {
                let head = kv * headDim..<(kv + 1) * headDim
                keys.append(
                    try f.cache(layer: slot, kvHead: kv, values: false, try f.rope(try g.slice(k, axis: 1, begin: head.lowerBound, end: head.upperBound), rope))
                )
                values.append(try f.cache(layer: slot, kvHead: kv, values: true, try g.slice(v, axis: 1, begin: head.lowerBound, end: head.upperBound)))
            }
            var heads = [ANETensor]()
            for head in 0..<c.numAttentionHeads {
                let qh = try f.rope(try g.slice(q, axis: 1, begin: head * headDim, end: (head + 1) * headDim), rope)
                heads.append(try f.attend(qh, keys: keys[head / group], values: values[head / group], mask: f.mask))
            }
            x = try g.add(x, try f.linear(try g.concat(heads, axis: 1), a.o, "l\(l)_o"))

            let h2 = try f.rmsNorm(x, layer.mlpNorm, eps: eps, "l\(l)_mlp_norm")
            let gate = try f.linear(h2, layer.mlp.gate, "l\(l)_gate")
            let up = try f.linear(h2, layer.mlp.up, "l\(l)_up")
            let act = try g.mul(try g.mul(gate, g.sigmoid(gate)), up)  // SiLU(gate)·up
            x = try g.add(x, try f.linear(act, layer.mlp.down, "l\(l)_down"))
        }
        try f.finish(x) { x in
            let final = try f.rmsNorm(try f.lastColumn(x), model.head.norm, eps: eps, "final_norm")
            try f.outputHead(final, model.head.output.weight, vocabularySize: c.vocabSize)
        }
    }
}
