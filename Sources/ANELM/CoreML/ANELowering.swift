import CANELMKernels
import Foundation

/// Choices of the ANE lowering.
public struct ANELoweringOptions: Sendable {
    /// The fixed context N of the decode function (KV states are (1, headDim, 1, N)).
    public var contextLength = 512
    /// Most channels of one output-layer conv: the ANE rejects wider conv outputs (16,384).
    public var maxOutputChannels = 16_384
    public init(contextLength: Int = 512, maxOutputChannels: Int = 16_384) {
        self.contextLength = contextLength
        self.maxOutputChannels = maxOutputChannels
    }
}

/// Lowers a loaded model into an `ANEGraph` for one-token decode (fixed context, KV cache as states),
/// in the style of Apple's ml-ane-transformers: every linear a 1×1 conv with fp16 weights, heads split
/// into explicit per-head ops, no reshapes or transposes on the hot path.
/// A prefill function (a block of tokens per call) is not lowered yet.
public enum ANELowering {
    /// Architectures this lowering handles: the Llama family.
    public static let supportedArchitectures = ["llama", "mistral", "qwen2", "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"]

    /// The decode graph of `loaded`; a model outside the Llama family is an error naming its architecture.
    public static func decodeGraph(_ loaded: LoadedModel, options: ANELoweringOptions = ANELoweringOptions()) throws -> ANEGraph {
        guard let llama = loaded.model as? LlamaModel else {
            throw ANELMError("ANE lowering does not support architecture '\(loaded.architecture)' (supported: the Llama family: \(supportedArchitectures.joined(separator: ", ")))")
        }
        return try LlamaANELowering(model: llama, options: options).build()
    }

    /// The output layer's channel ranges: as few chunks as keep each ≤ `maxChannels`, sizes balanced.
    public static func outputChunks(vocabularySize: Int, maxChannels: Int) throws -> [Range<Int>] {
        guard vocabularySize > 0, maxChannels > 0 else { throw ANELMError("cannot chunk \(vocabularySize) channels by \(maxChannels)") }
        let count = (vocabularySize + maxChannels - 1) / maxChannels
        let base = vocabularySize / count, extra = vocabularySize % count
        var start = 0
        return (0..<count).map { i in
            let size = base + (i < extra ? 1 : 0)
            defer { start += size }
            return start..<(start + size)
        }
    }
}

/// The Llama-family decode graph. Graph inputs: `token` (int32), `position_onehot` (1, 1, 1, N) and
/// `attention_mask` (1, 1, 1, N, additive); outputs: `logits_<i>` per output chunk and `token` (argmax).
struct LlamaANELowering {
    let model: LlamaModel
    let options: ANELoweringOptions
    let g = ANEGraphBuilder()

    var c: LlamaConfiguration { model.configuration }

    func build() throws -> ANEGraph {
        let n = min(options.contextLength, c.maxPositionEmbeddings)
        guard n > 0 else { throw ANELMError("ANE lowering needs a positive context length, got \(options.contextLength)") }
        let hidden = c.hiddenSize, headDim = c.headDim, half = headDim / 2
        let chunks = try ANELowering.outputChunks(vocabularySize: c.vocabSize, maxChannels: options.maxOutputChannels)
        g.metadata = ["context_length": n, "vocab_size": c.vocabSize, "output_chunks": chunks.count, "layers": c.numHiddenLayers]

        let token = g.input("token", shape: [1, 1, 1, 1], dtype: .int32)
        let oneHot = g.input("position_onehot", shape: [1, 1, 1, n])
        let mask = g.input("attention_mask", shape: [1, 1, 1, n])

        // Embedding: the table as (vocab, hidden, 1, 1); gathering row `token` gives (1, hidden, 1, 1).
        let table = g.constant("embedding", fp16Bits: try fp16(model.embedding), shape: [c.vocabSize, hidden, 1, 1])
        var x = try g.gather(table, indices: token, axis: 0)

        // RoPE: cos/sin of every position as consts (1, headDim, 1, N); the position's column is picked by a
        // matmul with the one-hot input. rotate_half's sign is folded into the sin table.
        let inv = model.rope.inverseFrequencies
        var cosTable = [Float](repeating: 0, count: headDim * n), sinTable = cosTable
        for d in 0..<headDim {
            for p in 0..<n {
                let angle = Float(p) * inv[d % half]
                cosTable[d * n + p] = Float(cos(Double(angle)))
                sinTable[d * n + p] = Float(sin(Double(angle))) * (d < half ? -1 : 1)
            }
        }
        let cosP = try g.matmul(try g.constant("rope_cos", cosTable, shape: [1, headDim, 1, n]), oneHot, transposeY: true)
        let sinP = try g.matmul(try g.constant("rope_sin", sinTable, shape: [1, headDim, 1, n]), oneHot, transposeY: true)
        let keep = try g.sub(try g.constant("one", [1], shape: [1, 1, 1, 1]), oneHot)

        func rope(_ v: ANETensor) throws -> ANETensor {
            let rotated = try g.concat([try g.slice(v, axis: 1, begin: half, end: headDim), try g.slice(v, axis: 1, begin: 0, end: half)], axis: 1)
            return try g.add(try g.mul(v, cosP), try g.mul(rotated, sinP))
        }

        let group = c.numAttentionHeads / c.numKeyValueHeads
        // 1/√headDim is folded into the q projection (and its bias): one op fewer per head.
        let scale = 1 / Float(headDim).squareRoot()
        // GGUF `llama` files permute q/k rows so RoPE pairs adjacent dims; un-permute them to rotate_half
        // order, which slices express. q·k is unchanged because q and k get the same permutation.
        let permute = model.rope.style == .adjacent
        for (l, layer) in model.layers.enumerated() {
            let a = layer.attention
            let h = try rmsNorm(x, layer.attentionNorm, "l\(l)_attn_norm")
            let q = try linear(h, a.q, "l\(l)_q", scale: scale, permuteHeads: permute ? headDim : nil)
            let k = try linear(h, a.k, "l\(l)_k", permuteHeads: permute ? headDim : nil)
            let v = try linear(h, a.v, "l\(l)_v")
            var keys = [ANETensor](), values = [ANETensor]()
            for kv in 0..<c.numKeyValueHeads {
                let range = (kv * headDim, (kv + 1) * headDim)
                let kh = try rope(try g.slice(k, axis: 1, begin: range.0, end: range.1))
                let vh = try g.slice(v, axis: 1, begin: range.0, end: range.1)
                // Write this position's column into the cache: cache·(1 - onehot) + new·onehot.
                for (name, new) in [("k", kh), ("v", vh)] {
                    let state = g.readState("l\(l)_\(name)\(kv)_cache", shape: [1, headDim, 1, n])
                    let updated = try g.add(try g.mul(state.value, keep), try g.mul(new, oneHot))
                    try g.writeState(state.state, updated)
                    if name == "k" { keys.append(updated) } else { values.append(updated) }
                }
            }
            var heads = [ANETensor]()
            for head in 0..<c.numAttentionHeads {
                let qh = try rope(try g.slice(q, axis: 1, begin: head * headDim, end: (head + 1) * headDim))
                let scores = try g.add(try g.matmul(qh, keys[head / group], transposeX: true), mask)  // (1, 1, 1, N)
                let weights = try g.softmax(scores, axis: 3)
                heads.append(try g.matmul(values[head / group], weights, transposeY: true))  // (1, headDim, 1, 1)
            }
            let attended = try g.concat(heads, axis: 1)
            x = try g.add(x, try linear(attended, a.o, "l\(l)_o"))

            let h2 = try rmsNorm(x, layer.mlpNorm, "l\(l)_mlp_norm")
            let gate = try linear(h2, layer.mlp.gate, "l\(l)_gate")
            let up = try linear(h2, layer.mlp.up, "l\(l)_up")
            let act = try g.mul(try g.mul(gate, g.sigmoid(gate)), up)  // SiLU(gate)·up
            x = try g.add(x, try linear(act, layer.mlp.down, "l\(l)_down"))
        }
        let final = try rmsNorm(x, model.outputNorm, "final_norm")

        // Output layer in chunks ≤ maxOutputChannels; each chunk's argmax and max, then the argmax over
        // the chunk winners picks the token.
        var chunkIndices = [ANETensor](), chunkMaxima = [ANETensor]()
        for (i, range) in chunks.enumerated() {
            let w = try fp16(model.output.weight, rows: range)
            let logits = try g.conv(final, weight: g.constant("output_\(i)", fp16Bits: w, shape: [range.count, hidden, 1, 1]), name: "logits_\(i)")
            g.output("logits_\(i)", logits)
            let local = try g.reduceArgmax(logits, axis: 1)
            chunkIndices.append(try g.add(local, try g.constant("output_\(i)_offset", int32: [Int32(range.lowerBound)], shape: [1, 1, 1, 1])))
            chunkMaxima.append(try g.reduceMax(logits, axis: 1))
        }
        let winner = try g.reduceArgmax(try g.concat(chunkMaxima, axis: 1), axis: 1)
        g.output("token", try g.gather(try g.concat(chunkIndices, axis: 1), indices: winner, axis: 1))
        return g.build()
    }

    /// RMSNorm from ANE-friendly ops, fp16-safe: SmolLM2's residual stream has outliers in the hundreds,
    /// whose squares overflow fp16 (max 65,504). So x is first divided by max|x| (≤ 1 after, squares ≤ 1,
    /// and their mean ≥ 1/C stays a normal fp16 number); the norm is scale-invariant, so only eps must
    /// follow the scale: eps / max|x|².
    func rmsNorm(_ x: ANETensor, _ weight: [Float], _ name: String) throws -> ANETensor {
        let inv = g.inverse(try g.reduceMax(g.abs(x), axis: 1))
        let scaled = try g.mul(x, inv)
        let meanSquare = try g.reduceMean(g.square(scaled), axis: 1)
        let eps = try g.mul(g.square(inv), try g.constant(name + "_eps", [c.rmsNormEps], shape: [1, 1, 1, 1]))
        let normalized = try g.mul(scaled, g.rsqrt(try g.add(meanSquare, eps)))
        return try g.mul(normalized, try g.constant(name + "_weight", weight, shape: [1, weight.count, 1, 1]))
    }

    /// A linear layer as a 1×1 conv with fp16 weights (dequantized from the stored type), optionally
    /// scaled and with each head's rows un-permuted from adjacent-pair to rotate_half order.
    func linear(_ x: ANETensor, _ layer: Linear, _ name: String, scale: Float = 1, permuteHeads headDim: Int? = nil) throws -> ANETensor {
        let rows = layer.outFeatures, cols = layer.inFeatures
        var order = Array(0..<rows)
        if let headDim {
            let half = headDim / 2
            order = (0..<rows).map { r in
                let head = r / headDim, j = r % headDim
                return head * headDim + (j < half ? 2 * j : 2 * (j - half) + 1)
            }
        }
        let weight = try fp16(layer.weight, rows: 0..<rows, order: order, scale: scale)
        let w = g.constant(name + "_weight", fp16Bits: weight, shape: [rows, cols, 1, 1])
        let bias = try layer.bias.map { b in try g.constant(name + "_bias", order.map { b[$0] * scale }, shape: [rows]) }
        return try g.conv(x, weight: w, bias: bias, name: name)
    }

    /// Rows of a weight matrix as fp16 bits, row i taken from `order[i]` and multiplied by `scale`.
    func fp16(_ m: WeightMatrix, rows: Range<Int>? = nil, order: [Int]? = nil, scale: Float = 1) throws -> [UInt16] {
        let range = rows ?? 0..<m.rows
        guard range.lowerBound >= 0, range.upperBound <= m.rows else { throw ANELMError("rows \(range) outside a \(m.rows)-row matrix") }
        var out = [UInt16](repeating: 0, count: range.count * m.cols)
        var row = [Float](repeating: 0, count: m.cols)
        for (i, r) in range.enumerated() {
            let source = order?[r] ?? r
            row.withUnsafeMutableBufferPointer { m.dequantizeRow(source, into: $0.baseAddress!) }
            if scale != 1 { for j in row.indices { row[j] *= scale } }
            row.withUnsafeBufferPointer { src in out.withUnsafeMutableBufferPointer { anelm_convert_f32_to_f16(src.baseAddress, $0.baseAddress! + i * m.cols, m.cols) } }
        }
        return out
    }
}
