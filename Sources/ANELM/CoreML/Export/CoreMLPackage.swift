import Foundation

/// Writes a lowered model as a Core ML .mlpackage (the folder Xcode and coremltools write):
///
///     NAME.mlpackage/
///       Manifest.json                                 items by id, the root model's id
///       Data/com.apple.CoreML/model.mlmodel           ML Program, specification version 9, one function per lowered function
///       Data/com.apple.CoreML/weights/weight.bin      MILBlob storage, each constant once, shared by the functions
///       Data/com.anelm/anelm.json                     ANEPackageInfo
///       Data/com.anelm/tokenizer/                     loadable with ModelLoader.loadText
public enum CoreMLPackage {
    public static let modelPath = "Data/com.apple.CoreML/model.mlmodel"
    public static let weightsPath = "Data/com.apple.CoreML/weights/weight.bin"
    public static let infoPath = "Data/com.anelm/anelm.json"
    public static let tokenizerPath = "Data/com.anelm/tokenizer"
    /// Core ML 8 (iOS 18 / macOS 15): states, multiple functions, the iOS 18 constexpr ops.
    static let specificationVersion = 9
    /// The Hugging Face files that make a tokenizer folder (those present are copied).
    static let tokenizerFiles = ["tokenizer.json", "tokenizer_config.json", "config.json", "generation_config.json", "chat_template.jinja"]

    /// What an export wrote (a chain: all its packages together).
    public struct Summary: Sendable {
        /// MIL ops per function, in program order.
        public var operations: [(function: String, count: Int)]
        public var modelBytes: Int
        public var weightBytes: Int
        public var blobs: Int
        /// Compressed constants and their reconstruction error (none for fp16).
        public var compressedWeights: Int
        public var error: QuantizationError

        /// This chunk's summary with `other`'s added, functions named `chunk<i>/<function>`.
        func adding(_ other: Summary?, chunk: Int) -> Summary {
            var s = self
            if chunk == 0 { s.operations = operations.map { ("chunk1/" + $0.function, $0.count) } }
            guard let other else { return s }
            s.operations += other.operations.map { ("chunk\(chunk + 1)/" + $0.function, $0.count) }
            s.modelBytes += other.modelBytes
            s.weightBytes += other.weightBytes
            s.blobs += other.blobs
            s.compressedWeights += other.compressedWeights
            s.error.add(other.error)
            return s
        }
    }

    /// The Core ML name of graph output `name` of a function with `inputs` (see `ANEPackageInfo`).
    public static func outputFeatureName(_ name: String, inputs: [String: Int]) -> String {
        MILTranslator.outputFeatureName(name, inputs: inputs)
    }

    /// Lowers `loaded` and writes its package at `path` (which must not exist yet). When its weights would
    /// exceed `maxPackageBytes`, the layers are split into consecutive chunks, each its own package
    /// (`path`, then `NAME-chunk2.mlpackage`, …) with the KV state of its layers (`chunkPaths`); every
    /// chunk's anelm.json names the chain (`ANEPackageInfo.chunks`).
    public static func export(
        _ loaded: LoadedModel, to path: String, options: ANELoweringOptions = ANELoweringOptions(),
        weights: ANEWeightFormat = .fp16, lutGroup: Int = ANEWeightFormat.defaultLUTGroup,
        maxPackageBytes: Int = ANELint.maxPackageBytes, progress: @escaping (String) -> Void = { _ in }
    ) throws -> Summary {
        try checkDestination(path)
        guard maxPackageBytes > 0 else { throw ANELMError("the largest package must be a positive number of bytes, got \(maxPackageBytes)") }
        progress("lowering \(loaded.name) (\(loaded.architecture)) for the Neural Engine, context \(options.contextLength)…")
        let program = try ANELowering.program(loaded, options: options)
        let ranges = try chunkLayers(program, weights: weights, maxBytes: maxPackageBytes)
        if ranges.count == 1 {
            let info = try ANEPackageInfo(program: program, loaded: loaded, weights: weights)
            return try write(program, info: info, tokenizer: loaded.source, to: path, weights: weights, lutGroup: lutGroup, progress: progress)
        }
        let paths = chunkPaths(path, count: ranges.count)
        for p in paths.dropFirst() { try checkDestination(p) }
        progress(
            "\(ranges.count) packages of at most \(megabytes(maxPackageBytes)) of weights: layers \(ranges.map { "\($0.lowerBound)..<\($0.upperBound)" }.joined(separator: ", "))"
        )
        var total: Summary?
        var written = [String]()
        do {
            for (i, range) in ranges.enumerated() {
                var chunkOptions = options
                chunkOptions.layers = range
                let chunk = try ANELowering.program(loaded, options: chunkOptions)
                var info = try ANEPackageInfo(program: chunk, loaded: loaded, weights: weights, chain: program)
                info.chunks = paths.map { URL(fileURLWithPath: $0).lastPathComponent }
                info.chunkIndex = i
                info.chunkLayers = [range.lowerBound, range.upperBound]
                let summary = try write(
                    chunk, info: info, tokenizer: i == 0 ? loaded.source : nil, to: paths[i], weights: weights, lutGroup: lutGroup, progress: progress)
                written.append(paths[i])
                total = total.map { $0.adding(summary, chunk: i) } ?? summary.adding(nil, chunk: i)
            }
        } catch {
            for p in written { try? FileManager.default.removeItem(atPath: p) }  // no partial chain left behind
            throw error
        }
        guard let total else { throw ANELMError("no chunk was written") }
        return total
    }

    /// The packages of a chain of `count`: `path` itself, then `NAME-chunk2.mlpackage`, … beside it.
    public static func chunkPaths(_ path: String, count: Int) -> [String] {
        let url = URL(fileURLWithPath: path)
        let stem = url.deletingPathExtension().lastPathComponent
        let folder = url.deletingLastPathComponent()
        return (0..<count).map { $0 == 0 ? path : folder.appendingPathComponent("\(stem)-chunk\($0 + 1).mlpackage").path }
    }

    /// Consecutive layer ranges whose weights (estimated from the fp16 constants named `l<i>_…`, at the
    /// format's bits per weight; the embedding goes to the first chunk, the output layer to the last) stay
    /// within `maxBytes` each; a layer larger than that alone is its own chunk (and the lint flags it).
    static func chunkLayers(_ program: ANEProgram, weights: ANEWeightFormat, maxBytes: Int) throws -> [Range<Int>] {
        guard let graph = program.functions.first?.graph, let layers = program.metadata["layers"], layers > 0 else {
            throw ANELMError("the lowered program records no layers")
        }
        let bitsPerWeight = weights == .fp16 ? 16 : weights.lutBits ?? 8
        var layerBytes = [Int](repeating: 0, count: layers)
        var first = 0
        var last = 0
        for (id, constant) in graph.constants {
            guard case .fp16(let bits) = constant else { continue }
            let name = graph.tensors[id].name
            let bytes = bits.count * bitsPerWeight / 8
            if name.hasPrefix("l"), let digits = Int(name.dropFirst().prefix { $0.isNumber }), digits < layers {
                layerBytes[digits] += bytes
            } else if name == "embedding" {
                first += bytes
            } else if name.hasPrefix("output_") {
                last += bytes
            }
        }
        layerBytes[0] += first
        layerBytes[layers - 1] += last
        return balancedRanges(layerBytes, maxBytes: maxBytes)
    }

    /// Consecutive ranges of `sizes` (bytes per layer), as few as `maxBytes` per range allows (a layer larger
    /// than that gets a range of its own), and among those splits the most even one (least sum of squared
    /// range sizes): packages of similar size rather than full ones and a small remainder.
    public static func balancedRanges(_ sizes: [Int], maxBytes: Int) -> [Range<Int>] {
        let n = sizes.count
        guard n > 0 else { return [] }
        // How many: greedy filling gives the fewest.
        var count = 1
        var filled = 0
        for (l, b) in sizes.enumerated() {
            if l > 0 && filled + b > maxBytes {
                count += 1
                filled = 0
            }
            filled += b
        }
        // Where: cost[j][i] = the least cost of the first i layers in j ranges (dynamic programming).
        var prefix = [0]
        for b in sizes { prefix.append(prefix[prefix.count - 1] + b) }
        let none = Double.infinity
        var cost = [[Double]](repeating: [Double](repeating: none, count: n + 1), count: count + 1)
        var cut = [[Int]](repeating: [Int](repeating: 0, count: n + 1), count: count + 1)
        cost[0][0] = 0
        for j in 1...count {
            for i in j...n {
                for start in (j - 1)..<i where cost[j - 1][start] < none {
                    let bytes = prefix[i] - prefix[start]
                    guard bytes <= maxBytes || i - start == 1 else { continue }
                    let c = cost[j - 1][start] + Double(bytes) * Double(bytes)
                    if c < cost[j][i] {
                        cost[j][i] = c
                        cut[j][i] = start
                    }
                }
            }
        }
        var ranges = [Range<Int>]()
        var end = n
        for j in stride(from: count, through: 1, by: -1) {
            let start = cut[j][end]
            ranges.insert(start..<end, at: 0)
            end = start
        }
        return ranges
    }

    /// Writes `program` at `path`: into a uniquely named sibling staging folder first (`StagedOutput`), moved into
    /// place when complete, so a failed or interrupted export leaves nothing behind.
    public static func write(
        _ program: ANEProgram, info: ANEPackageInfo, tokenizer: ModelSource?, to path: String,
        weights: ANEWeightFormat = .fp16, lutGroup: Int = ANEWeightFormat.defaultLUTGroup,
        progress: @escaping (String) -> Void = { _ in }
    ) throws -> Summary {
        try checkDestination(path)
        guard lutGroup > 0 else { throw ANELMError("the LUT group must be a positive number of output channels, got \(lutGroup)") }
        // ANEProgram has checked its contract: one set of states, same-named constants equal.
        guard let first = program.functions.first else { throw ANELMError("the lowered program has no functions") }
        guard Set(program.functions.map(\.name)).count == program.functions.count else { throw ANELMError("the lowered program names a function twice") }

        let fm = FileManager.default
        let output = try StagedOutput(destination: path)
        defer { output.discard() }
        let root = URL(fileURLWithPath: output.staging)
        func create(_ relative: String) throws {
            try fm.createDirectory(at: root.appendingPathComponent(relative), withIntermediateDirectories: true)
        }
        try create("Data/com.apple.CoreML/weights")
        try create(tokenizerPath)

        // weight.bin, written while the functions are translated.
        let blobs = try MILBlobWriter(path: root.appendingPathComponent(weightsPath).path)
        let translator = MILTranslator(blobs: blobs, format: weights, lutGroup: lutGroup, progress: progress)
        var functions: [(name: String, function: MILFunction)] = []
        var descriptions: [CoreMLFunctionDescription] = []
        var counts: [(function: String, count: Int)] = []
        for f in program.functions {
            let (function, description) = try translator.translate(f)
            functions.append((f.name, function))
            descriptions.append(description)
            counts.append((f.name, function.operations.count))
            progress("\(f.name): \(function.operations.count) MIL ops, \(f.graph.states.count) states; weight.bin at \(megabytes(Int(blobs.size)))")
        }
        try blobs.finish()

        // model.mlmodel.
        var info = info
        if weights.lutBits != nil { info.metadata["lut_group"] = lutGroup }
        var userDefined = [("com.anelm.architecture", info.architecture), ("com.anelm.source", info.source), ("com.anelm.weights", info.weights)]
        userDefined += program.metadata.sorted { $0.key < $1.key }.map { ("com.anelm." + $0.key, String($0.value)) }
        let model = CoreMLModel(
            specificationVersion: specificationVersion, functions: descriptions,
            defaultFunctionName: program.function("decode") != nil ? "decode" : first.name,
            userDefined: userDefined, program: MILProgram(functions: functions))
        let modelBytes = model.serialized()
        try Data(modelBytes).write(to: root.appendingPathComponent(modelPath))

        // The app's side: info and tokenizer.
        try info.encoded().write(to: root.appendingPathComponent(infoPath))
        if let tokenizer { try writeTokenizer(tokenizer, to: root.appendingPathComponent(tokenizerPath)) }
        try manifest().write(to: root.appendingPathComponent("Manifest.json"))

        try output.commit()
        let summary = Summary(
            operations: counts, modelBytes: modelBytes.count, weightBytes: Int(blobs.size), blobs: blobs.count,
            compressedWeights: translator.compressedCount, error: translator.error)
        progress("wrote \(path): model.mlmodel \(megabytes(summary.modelBytes)), weight.bin \(megabytes(summary.weightBytes)) in \(summary.blobs) blobs")
        if summary.compressedWeights > 0 {
            progress(
                "\(weights.rawValue): \(summary.compressedWeights) weights compressed, relative RMS error \(String(format: "%.4g", summary.error.relativeRMS)), max \(String(format: "%.4g", summary.error.maxAbsolute))"
            )
        }
        return summary
    }

    /// An export needs a new `NAME.mlpackage` in an existing folder.
    public static func checkDestination(_ path: String) throws {
        let url = URL(fileURLWithPath: path)
        guard url.pathExtension == "mlpackage" else { throw ANELMError("--output must end in .mlpackage, got \(path)") }
        guard !FileManager.default.fileExists(atPath: path) else { throw ANELMError("\(path) already exists; remove it or choose another --output") }
        var isDirectory: ObjCBool = false
        let parent = url.deletingLastPathComponent().path
        guard FileManager.default.fileExists(atPath: parent, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ANELMError("the folder \(parent) for \(url.lastPathComponent) does not exist")
        }
    }

    /// Manifest.json as ModelPackage writes it (coremltools modelpackage/src/ModelPackage.cpp): items by
    /// identifier with path (under Data/), name, author and description; the root model's identifier.
    static func manifest() throws -> Data {
        func item(_ path: String, _ name: String, _ author: String, _ description: String) -> [String: String] {
            ["path": path, "name": name, "author": author, "description": description]
        }
        let model = UUID().uuidString
        let entries: [String: [String: String]] = [
            model: item("com.apple.CoreML/model.mlmodel", "model.mlmodel", "com.apple.CoreML", "CoreML Model Specification"),
            UUID().uuidString: item("com.apple.CoreML/weights", "weights", "com.apple.CoreML", "CoreML Model Weights"),
            UUID().uuidString: item("com.anelm/anelm.json", "anelm.json", "com.anelm", "anelm package info"),
            UUID().uuidString: item("com.anelm/tokenizer", "tokenizer", "com.anelm", "anelm tokenizer"),
        ]
        let manifest: [String: Any] = ["fileFormatVersion": "1.0.0", "itemInfoEntries": entries, "rootModelIdentifier": model]
        return try JSONSerialization.data(withJSONObject: manifest, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }

    /// The tokenizer folder: a Hugging Face source's tokenizer and config files, or for a GGUF source
    /// tokenizer.gguf (its metadata, no tensors).
    static func writeTokenizer(_ source: ModelSource, to folder: URL) throws {
        switch source {
        case .gguf(let file):
            try file.metadataOnlyData().write(to: folder.appendingPathComponent("tokenizer.gguf"))
        case .huggingFace(let hf):
            let from = URL(fileURLWithPath: hf.path)
            for name in tokenizerFiles where FileManager.default.fileExists(atPath: from.appendingPathComponent(name).path) {
                try FileManager.default.copyItem(at: from.appendingPathComponent(name), to: folder.appendingPathComponent(name))
            }
        }
    }

    static func megabytes(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1_048_576) }
}
