/// A model file as opened: GGUF, or a Hugging Face folder.
public enum ModelSource {
    case gguf(GGUFFile)
    case huggingFace(HFModelFolder)

    /// The architecture name the registry is keyed by: GGUF's `general.architecture`, or the
    /// first of config.json's `architectures`.
    public func architecture() throws -> String {
        switch self {
        case .gguf(let file):
            guard let arch = file.string("general.architecture") else { throw ANELMError("GGUF file has no general.architecture") }
            return arch
        case .huggingFace(let folder):
            if let first = folder.config["architectures"]?.arrayValue?.first?.stringValue { return first }
            if let type = folder.config["model_type"]?.stringValue { return type }
            throw ANELMError("config.json names no architectures or model_type")
        }
    }
}

/// Options that shape a model at load.
public struct LoadOptions: Sendable {
    public var precision: Precision = .auto
    /// Worker threads for the kernels; nil uses the physical cores.
    public var threads: Int?
    /// Caps the context (and so memory); nil uses the model's.
    public var contextLength: Int?
    public init(precision: Precision = .auto, threads: Int? = nil, contextLength: Int? = nil) {
        self.precision = precision
        self.threads = threads
        self.contextLength = contextLength
    }
}

/// Architecture name → how to build that model. New families register here instead of adding
/// switches through the code base.
public enum ModelRegistry {
    public typealias Builder = (ModelSource, LoadOptions, ThreadPool) throws -> LanguageModel

    static let builders: [String: Builder] = [
        // GGUF `general.architecture` names.
        "llama": LlamaModel.load, "mistral": LlamaModel.load, "qwen2": LlamaModel.load,
        "gemma3": Gemma3Model.load,
        // Hugging Face `architectures` names.
        "LlamaForCausalLM": LlamaModel.load, "MistralForCausalLM": LlamaModel.load, "Qwen2ForCausalLM": LlamaModel.load,
        "Gemma3ForCausalLM": Gemma3Model.load, "gemma3_text": Gemma3Model.load,
        "xLSTMForCausalLM": XLSTMModel.load,
    ]

    public static var supportedArchitectures: [String] { builders.keys.sorted() }

    public static func build(_ source: ModelSource, options: LoadOptions, pool: ThreadPool) throws -> LanguageModel {
        let arch = try source.architecture()
        guard let builder = builders[arch] else {
            throw ANELMError("unknown architecture '\(arch)'; anelm supports: \(supportedArchitectures.joined(separator: ", "))")
        }
        return try builder(source, options, pool)
    }
}
