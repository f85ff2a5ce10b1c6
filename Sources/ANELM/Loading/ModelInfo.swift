import Foundation

/// What `anelm info` shows: a model file described without loading its weights.
public struct ModelInfo {
    /// Ordered (key, value) lines.
    public private(set) var rows: [(key: String, value: String)] = []

    public init(path: String) throws {
        let source = try ModelLoader.open(path)
        add("path", path)
        switch source {
        case .gguf(let file):
            add("format", "GGUF v\(file.version)")
        case .huggingFace(let folder):
            add("format", "Hugging Face folder (\(folder.weightFiles.count) safetensors file\(folder.weightFiles.count == 1 ? "" : "s"))")
        }
        let architecture = try source.architecture()
        if let family = ModelRegistry.family(named: architecture) {
            add("architecture", "\(architecture) (\(family.name))")
            // A configuration the model could not load with is an error here too, not a silently shorter table.
            for (key, value) in try family.configuration(source).summary { add(key, value) }
            add("Neural Engine", family.hasANELowering ? "lowers to Core ML (anelm export-coreml)" : "no ANE lowering yet")
        } else {
            add("architecture", architecture + " (not supported)")
        }
        let (store, names) = Self.tensors(source)
        var counts: [String: Int] = [:]
        var parameters = 0
        var bytes = 0
        for name in names {
            guard let info = store(name) else { continue }
            counts[info.type, default: 0] += 1
            parameters += info.elements
            bytes += info.bytes
        }
        add("tensors", "\(names.count)")
        add("parameters", String(format: "%.1f M", Double(parameters) / 1e6))
        add("weight types", counts.sorted { $0.value > $1.value }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", "))
        add("weight bytes", String(format: "%.1f MB", Double(bytes) / 1e6))
        if let text = try? ModelLoader.loadText(source, path: path) {
            add("tokenizer", "\(text.tokenizer.vocabSize) tokens")
            add("chat template", text.chatTemplate.map { "yes (\($0.count) characters)" } ?? "none")
        } else {
            add("tokenizer", "missing or unsupported")
        }
    }

    private mutating func add(_ key: String, _ value: String) { rows.append((key, value)) }

    /// A lookup of (type name, elements, bytes) per tensor name, and the names, for either format.
    static func tensors(_ source: ModelSource) -> ((String) -> (type: String, elements: Int, bytes: Int)?, [String]) {
        switch source {
        case .gguf(let file):
            let infos = Dictionary(file.tensorInfos.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            return ({ name in infos[name].map { ($0.typeName, $0.shape.reduce(1, *), $0.byteSize) } }, file.tensorInfos.map(\.name))
        case .huggingFace(let folder):
            let store = folder.tensors
            return ({ name in (try? store.tensor(named: name))?.map { ($0.type.description, $0.elementCount, $0.data.count) } }, store.tensorNames)
        }
    }
}
