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

    /// What an export wrote.
    public struct Summary: Sendable {
        /// MIL ops per function, in program order.
        public var operations: [(function: String, count: Int)]
        public var modelBytes: Int
        public var weightBytes: Int
        public var blobs: Int
        /// Compressed constants and their reconstruction error (none for fp16).
        public var compressedWeights: Int
        public var error: QuantizationError
    }

    /// The Core ML name of graph output `name` of a function with `inputs` (see `ANEPackageInfo`).
    public static func outputFeatureName(_ name: String, inputs: [String: Int]) -> String {
        MILTranslator.outputFeatureName(name, inputs: inputs)
    }

    /// Lowers `loaded` and writes its package at `path` (which must not exist yet).
    public static func export(_ loaded: LoadedModel, to path: String, options: ANELoweringOptions = ANELoweringOptions(),
                              weights: ANEWeightFormat = .fp16, progress: @escaping (String) -> Void = { _ in }) throws -> Summary {
        try checkDestination(path)
        progress("lowering \(loaded.name) (\(loaded.architecture)) for the Neural Engine, context \(options.contextLength)…")
        let program = try ANELowering.program(loaded, options: options)
        let info = try ANEPackageInfo(program: program, loaded: loaded, weights: weights)
        return try write(program, info: info, tokenizer: loaded.source, to: path, weights: weights, progress: progress)
    }

    /// Writes `program` at `path`: into a sibling `.partial` folder first, moved into place when complete,
    /// so a failed export leaves nothing behind.
    public static func write(_ program: ANEProgram, info: ANEPackageInfo, tokenizer: ModelSource?, to path: String,
                             weights: ANEWeightFormat = .fp16, progress: @escaping (String) -> Void = { _ in }) throws -> Summary {
        try checkDestination(path)
        // ANEProgram has checked its contract: one set of states, same-named constants equal.
        guard let first = program.functions.first else { throw ANELMError("the lowered program has no functions") }
        guard Set(program.functions.map(\.name)).count == program.functions.count else { throw ANELMError("the lowered program names a function twice") }

        let fm = FileManager.default
        let staging = path + ".partial"
        try? fm.removeItem(atPath: staging)
        var finished = false
        defer { if !finished { try? fm.removeItem(atPath: staging) } }
        let root = URL(fileURLWithPath: staging)
        func create(_ relative: String) throws {
            try fm.createDirectory(at: root.appendingPathComponent(relative), withIntermediateDirectories: true)
        }
        try create("Data/com.apple.CoreML/weights")
        try create(tokenizerPath)

        // weight.bin, written while the functions are translated.
        let blobs = try MILBlobWriter(path: root.appendingPathComponent(weightsPath).path)
        let translator = MILTranslator(blobs: blobs, format: weights, progress: progress)
        var functions: [(name: String, function: MILFunction)] = [], descriptions: [CoreMLFunctionDescription] = []
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
        var userDefined = [("com.anelm.architecture", info.architecture), ("com.anelm.source", info.source), ("com.anelm.weights", info.weights)]
        userDefined += program.metadata.sorted { $0.key < $1.key }.map { ("com.anelm." + $0.key, String($0.value)) }
        let model = CoreMLModel(specificationVersion: specificationVersion, functions: descriptions,
                                defaultFunctionName: program.function("decode") != nil ? "decode" : first.name,
                                userDefined: userDefined, program: MILProgram(functions: functions))
        let modelBytes = model.serialized()
        try Data(modelBytes).write(to: root.appendingPathComponent(modelPath))

        // The app's side: info and tokenizer.
        try info.encoded().write(to: root.appendingPathComponent(infoPath))
        if let tokenizer { try writeTokenizer(tokenizer, to: root.appendingPathComponent(tokenizerPath)) }
        try manifest().write(to: root.appendingPathComponent("Manifest.json"))

        try fm.moveItem(atPath: staging, toPath: path)
        finished = true
        let summary = Summary(operations: counts, modelBytes: modelBytes.count, weightBytes: Int(blobs.size), blobs: blobs.count,
                              compressedWeights: translator.compressedCount, error: translator.error)
        progress("wrote \(path): model.mlmodel \(megabytes(summary.modelBytes)), weight.bin \(megabytes(summary.weightBytes)) in \(summary.blobs) blobs")
        if summary.compressedWeights > 0 {
            progress("\(weights.rawValue): \(summary.compressedWeights) weights compressed, relative RMS error \(String(format: "%.4g", summary.error.relativeRMS)), max \(String(format: "%.4g", summary.error.maxAbsolute))")
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
