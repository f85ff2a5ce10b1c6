import Foundation

/// `--lora PATH[:SCALE]`: an adapter to load and the factor its update is multiplied by (1 by default).
public struct LoRAChoice: Sendable, Equatable {
    public var path: String
    public var scale: Float

    public init(path: String, scale: Float = 1) {
        self.path = path
        self.scale = scale
    }

    /// `PATH` or `PATH:SCALE`; a path that itself contains ':' keeps it unless what follows the last ':' is a number.
    public init(parsing text: String) throws {
        if let colon = text.lastIndex(of: ":"), let scale = Float(text[text.index(after: colon)...]) {
            guard scale.isFinite else { throw ANELMError("--lora \(text): the scale must be a finite number") }
            self.init(path: String(text[..<colon]), scale: scale)
        } else {
            self.init(path: text)
        }
        guard !path.isEmpty else { throw ANELMError("--lora needs a path: --lora PATH[:SCALE]") }
    }
}

/// The adapters a model was loaded with, their ids (their order on the command line) and current scales: what
/// `GET /lora-adapters` lists and `POST /lora-adapters` changes. A sequence runs with the scales it was given
/// (`GenerationParameters.loraScales`) or these.
public final class LoRAAdapterTable: @unchecked Sendable {
    public struct Entry: Sendable, Equatable {
        public let id: Int
        public let path: String
        public let format: LoRAAdapter.Format
        public var scale: Float
        /// Added into the weights at load (`--lora-merge`): always on, at the scale it was merged with.
        public let merged: Bool
    }

    private let lock = NSLock()
    private var _entries: [Entry]

    init(_ entries: [Entry]) { _entries = entries }

    public var entries: [Entry] { lock.withLock { _entries } }

    /// The current scale of every adapter, by id: the scales a sequence runs with unless told otherwise.
    public var scales: [Float] { entries.map(\.scale) }

    /// Sets the default scales of the adapters named; the others keep theirs.
    public func setScales(_ scales: [(id: Int, scale: Float)]) throws {
        try lock.withLock {
            var entries = _entries
            for (id, scale) in scales { entries[try index(of: id, scale: scale, in: entries)].scale = scale }
            _entries = entries
        }
    }

    /// Every adapter's scale for one sequence: those named, 0 for the others (llama-server's rule), merged
    /// adapters at their merged scale.
    public func requestScales(_ named: [(id: Int, scale: Float)]) throws -> [Float] {
        let entries = self.entries
        var scales = entries.map { $0.merged ? $0.scale : 0 }
        for (id, scale) in named { scales[try index(of: id, scale: scale, in: entries)] = scale }
        return scales
    }

    private func index(of id: Int, scale: Float, in entries: [Entry]) throws -> Int {
        guard let i = entries.firstIndex(where: { $0.id == id }) else {
            throw ANELMError("no LoRA adapter with id \(id) (\(entries.isEmpty ? "none were loaded" : "ids 0…\(entries.count - 1)"))")
        }
        guard scale.isFinite else { throw ANELMError("LoRA adapter \(id): the scale must be a finite number") }
        guard !entries[i].merged || scale == entries[i].scale else {
            throw ANELMError("LoRA adapter \(id) is merged into the weights (--lora-merge); its scale stays \(entries[i].scale)")
        }
        return i
    }
}

/// The names of the linear weights a family's LoRA adapters may target, in both file formats, index for index:
/// how an adapter made for one format finds its layers in a model of the other.
struct LoRATargetNames {
    let huggingFace: [String]
    let gguf: [String]
    /// For weights whose rows llama.cpp's converter reorders (q/k of `llama` models): GGUF row r is
    /// transformers row `ggufRowSource[name][r]`. A converted adapter's B rows follow the same order.
    var ggufRowSource: [String: [Int]] = [:]

    init(huggingFace: [String], gguf: [String], ggufRowSource: [String: [Int]] = [:]) {
        precondition(huggingFace.count == gguf.count, "LoRA target names of both formats pair up")
        self.huggingFace = huggingFace
        self.gguf = gguf
        self.ggufRowSource = ggufRowSource
    }

    /// llama.cpp's q/k permutation (`permute` in convert_hf_to_gguf.py) of a `[heads × headDim]`-row weight, as
    /// row sources: within each head, GGUF row 2i + j is transformers row j·headDim/2 + i.
    static func ropePairRows(heads: Int, headDim: Int) -> [Int] {
        let half = headDim / 2
        return (0..<(heads * headDim)).map { r in
            let head = r / headDim
            let within = r % headDim
            return head * headDim + (within % 2) * half + within / 2
        }
    }
}

/// Attaches the adapters' updates to a model's linear layers as they are read (or adds them into the weights,
/// `--lora-merge`), checking every shape, and that every adapted weight exists.
final class LoRABinder {
    let adapters: [(adapter: LoRAAdapter, scale: Float)]
    let merge: Bool
    let native: TensorNaming
    let names: LoRATargetNames
    let pool: ThreadPool
    /// Per adapter, its targets translated to the model's names: name → index in `adapter.targets`.
    private var pending: [[String: Int]]

    init(_ adapters: [(adapter: LoRAAdapter, scale: Float)], merge: Bool, native: TensorNaming, names: LoRATargetNames, architecture: String, pool: ThreadPool)
        throws
    {
        self.adapters = adapters
        self.merge = merge
        self.native = native
        self.names = names
        self.pool = pool
        let translation: [String: String]
        switch native {
        case .huggingFace: translation = Dictionary(zip(names.gguf, names.huggingFace), uniquingKeysWith: { a, _ in a })
        case .gguf: translation = Dictionary(zip(names.huggingFace, names.gguf), uniquingKeysWith: { a, _ in a })
        }
        pending = try adapters.map { entry in
            let adapter = entry.adapter
            if let arch = adapter.architecture, !Self.same(arch, architecture) {
                throw ANELMError("LoRA adapter \(adapter.path) was made for \(quoted(arch)), the model is \(quoted(architecture))")
            }
            var byName: [String: Int] = [:]
            for (i, target) in adapter.targets.enumerated() {
                let name = adapter.naming == native ? target.name : translation[target.name] ?? target.name
                byName[name] = i
            }
            return byName
        }
    }

    /// GGUF architecture names against config.json's (`qwen2` / `Qwen2ForCausalLM` / `qwen2`, `gemma3` / `gemma3_text`).
    private static func same(_ adapter: String, _ model: String) -> Bool {
        let a = adapter.lowercased()
        let m = model.lowercased()
        return a == m || m.hasPrefix(a + "for") || m.hasPrefix(a + "_") || m.hasPrefix(a.replacingOccurrences(of: "_text", with: "") + "for")
    }

    /// Whether an adapter updates the model's weight `name` (and `attach` has not taken it yet).
    func adapts(_ name: String) -> Bool { pending.contains { $0[name] != nil } }

    /// `linear`, read from the model's weight `name`, with the adapters' updates of that weight: as side paths,
    /// or added into an f32 copy of the weight when merging.
    func attach(_ linear: Linear, name: String) throws -> Linear {
        var paths: [Linear.LoRAPath] = []
        for entry in adapters where entry.adapter.naming == native {
            guard let copy = entry.adapter.baseCopies.first(where: { $0.name == name }) else { continue }
            try checkSame(copy.tensor, linear.weight, name: name, adapter: entry.adapter.path)
        }
        for (id, entry) in adapters.enumerated() {
            guard let index = pending[id].removeValue(forKey: name) else { continue }
            let target = entry.adapter.targets[index]
            let weights = try oriented(target.weights, adapter: entry.adapter, name: name)
            guard weights.a.cols == linear.inFeatures, weights.b.rows == linear.outFeatures else {
                throw ANELMError(
                    "LoRA adapter \(entry.adapter.path) does not fit the model: \(quoted(target.name)) maps [\(weights.a.cols)] → [\(weights.b.rows)], "
                        + "the model's \(quoted(name)) is [\(linear.inFeatures)] → [\(linear.outFeatures)]; is it for another base model?")
            }
            paths.append(Linear.LoRAPath(adapter: id, weights: weights))
        }
        guard !paths.isEmpty else { return linear }
        guard merge else { return Linear(weight: linear.weight, bias: linear.bias, lora: linear.lora + paths) }
        return Linear(weight: try merged(linear.weight, paths), bias: linear.bias, lora: linear.lora)
    }

    /// A base weight saved with an adapter must be the model's: same shape and, for a model in a float type, the same
    /// values (a quantized model's are compared within its rounding: a different matrix is far outside it).
    private func checkSame(_ copy: Tensor, _ weight: WeightMatrix, name: String, adapter: String) throws {
        let saved = try WeightMatrix.dequantized(copy)
        guard saved.rows == weight.rows, saved.cols == weight.cols else {
            throw ANELMError(
                "LoRA adapter \(adapter) replaces \(quoted(name)) with a [\(saved.rows), \(saved.cols)] matrix (a resized vocabulary?); "
                    + "the model's is [\(weight.rows), \(weight.cols)], and anelm does not replace base weights")
        }
        let values = saved.data.assumingMemoryBound(to: Float.self)
        var row = [Float](repeating: 0, count: weight.cols)
        var differs = false
        for r in 0..<weight.rows where !differs {
            row.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.map { weight.dequantizeRow(r, into: $0) } }
            let scale = row.reduce(0) { max($0, abs($1)) }
            let tolerance = weight.type.isQuantized ? 0.1 * scale + 1e-6 : 1e-3 * scale + 1e-6
            differs = (0..<weight.cols).contains { abs(values[r * weight.cols + $0] - row[$0]) > tolerance }
        }
        guard !differs else {
            throw ANELMError("LoRA adapter \(adapter) was saved with a different \(quoted(name)) than the model's (is it for another base model?)")
        }
    }

    /// B's rows in the model's order: reordered when the adapter was converted for the other format and that
    /// weight's rows differ between the formats (q/k of llama GGUFs).
    private func oriented(_ w: LoRAWeights, adapter: LoRAAdapter, name: String) throws -> LoRAWeights {
        guard adapter.naming != native else { return w }
        let ggufName = native == .gguf ? name : names.huggingFace.firstIndex(of: name).map { names.gguf[$0] }
        guard let ggufName, let source = names.ggufRowSource[ggufName], source.count == w.b.rows else { return w }
        let b = w.b.data.assumingMemoryBound(to: Float.self)
        let r = w.b.cols
        var out = [Float](repeating: 0, count: w.b.rows * r)
        for (ggufRow, hfRow) in source.enumerated() {
            let (to, from) = native == .gguf ? (ggufRow, hfRow) : (hfRow, ggufRow)
            for k in 0..<r { out[to * r + k] = b[from * r + k] }
        }
        return LoRAWeights(a: w.a, b: try WeightMatrix(f32: out, rows: w.b.rows, cols: r), scale: w.scale)
    }

    /// `W + Σ scale · B·A` in f32: the adapted weight costs 4 bytes per value instead of its stored size.
    private func merged(_ weight: WeightMatrix, _ paths: [Linear.LoRAPath]) throws -> WeightMatrix {
        let rows = weight.rows
        let cols = weight.cols
        var values = [Float](repeating: 0, count: rows * cols)
        values.withUnsafeMutableBufferPointer { out in
            guard let base = out.baseAddress else { return }
            pool.parallelRanges(rows, minimum: 1) { range in
                for row in range {
                    let y = base + row * cols
                    weight.dequantizeRow(row, into: y)
                    for path in paths {
                        let scale = self.adapters[path.adapter].scale * path.weights.scale
                        let b = path.weights.b.data.assumingMemoryBound(to: Float.self) + row * path.weights.rank
                        let a = path.weights.a.data.assumingMemoryBound(to: Float.self)
                        for k in 0..<path.weights.rank { Kernels.axpy(scale * b[k], a + k * cols, y, count: cols) }
                    }
                }
            }
        }
        return try WeightMatrix(f32: values, rows: rows, cols: cols)
    }

    /// The adapters as the model keeps them; an error for the first adapted weight the model does not have.
    func finish() throws -> LoRAAdapterTable {
        for (id, entry) in adapters.enumerated() {
            guard let index = pending[id].values.min() else { continue }
            let name = entry.adapter.targets[index].name
            throw ANELMError(
                "LoRA adapter \(entry.adapter.path) does not fit the model: it adapts \(quoted(name)), which the model has no linear layer for"
                    + "; is it for another base model?")
        }
        return LoRAAdapterTable(
            adapters.enumerated().map { id, entry in
                LoRAAdapterTable.Entry(id: id, path: entry.adapter.path, format: entry.adapter.format, scale: entry.scale, merged: merge)
            })
    }
}
