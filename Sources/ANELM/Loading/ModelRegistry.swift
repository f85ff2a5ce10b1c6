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

    /// The file's tensors by name.
    var tensors: TensorStore {
        switch self {
        case .gguf(let file): return file
        case .huggingFace(let folder): return folder.tensors
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
    /// LoRA adapters to apply, each with its scale; their ids are their order here.
    public var lora: [LoRAChoice]
    /// Adds the adapters into the weights at load instead of running them as side paths: faster, but every
    /// adapted weight becomes an f32 copy (4 bytes per value), and the scales are fixed.
    public var loraMerge: Bool
    public init(precision: Precision = .auto, threads: Int? = nil, contextLength: Int? = nil, lora: [LoRAChoice] = [], loraMerge: Bool = false) {
        self.precision = precision
        self.threads = threads
        self.contextLength = contextLength
        self.lora = lora
        self.loraMerge = loraMerge
    }

    /// What attaches `lora` to a model of `source` whose adaptable weights are `names`; nil without adapters.
    func loraBinder(_ source: ModelSource, names: LoRATargetNames, pool: ThreadPool) throws -> LoRABinder? {
        guard !lora.isEmpty else { return nil }
        let adapters = try lora.map { (adapter: try LoRAAdapter.open($0.path), scale: $0.scale) }
        let native: TensorNaming
        switch source {
        case .gguf: native = .gguf
        case .huggingFace: native = .huggingFace
        }
        return try LoRABinder(adapters, merge: loraMerge, native: native, names: names, architecture: try source.architecture(), pool: pool)
    }

    /// The context a model trained for `trained` positions runs with: the requested cap, if lower.
    func contextLength(cappedAt trained: Int) throws -> Int {
        guard let limit = contextLength else { return trained }
        guard limit > 0 else { throw ANELMError("context length must be positive, got \(limit)") }
        return min(trained, limit)
    }
}

/// A family's hyper-parameters, read from either file format without loading weights.
public protocol ModelConfiguration {
    init(_ source: ModelSource) throws
    /// What `anelm info` shows of them, in order.
    var summary: [(key: String, value: String)] { get }
}

/// Everything the code base needs to know about one model family, in one place.
public struct ModelFamily {
    /// A name for people ("the Llama family").
    public let name: String
    /// The names files give it: GGUF `general.architecture` values and config.json `architectures` / `model_type`.
    public let architectures: [String]
    /// Its hyper-parameters from a file, for `anelm info`.
    let configuration: (ModelSource) throws -> ModelConfiguration
    /// What its networks do, and how one is built from a file.
    let network: Network

    enum Network {
        /// Generates text: a `LanguageModel`, with its lowering to ANE-shaped Core ML functions where it has one.
        case decoder(load: (ModelSource, LoadOptions, ThreadPool) throws -> LanguageModel, aneLowering: ((LanguageModel) -> ANEModelLowering?)?)
        /// Reads text into one vector per token, for sentence embeddings.
        case encoder(load: (ModelSource, LoadOptions, ThreadPool) throws -> EncoderModel, aneLowering: ((EncoderModel) -> ANEEncoderModelLowering?)?)
    }

    /// A family of decoders (language models).
    init(
        name: String, architectures: [String], configuration: @escaping (ModelSource) throws -> ModelConfiguration,
        load: @escaping (ModelSource, LoadOptions, ThreadPool) throws -> LanguageModel, aneLowering: ((LanguageModel) -> ANEModelLowering?)?,
        conversion: ModelConversion? = nil, loraTargets: ((ModelSource) throws -> LoRATargetNames)? = nil
    ) {
        self.name = name
        self.architectures = architectures
        self.configuration = configuration
        self.conversion = conversion
        self.loraTargets = loraTargets
        network = .decoder(load: load, aneLowering: aneLowering)
    }

    /// A family of encoders (sentence-embedding models).
    init(
        name: String, architectures: [String], configuration: @escaping (ModelSource) throws -> ModelConfiguration,
        encoder: @escaping (ModelSource, LoadOptions, ThreadPool) throws -> EncoderModel, aneLowering: ((EncoderModel) -> ANEEncoderModelLowering?)?
    ) {
        self.name = name
        self.architectures = architectures
        self.configuration = configuration
        network = .encoder(load: encoder, aneLowering: aneLowering)
    }

    /// Its lowering to ANE-shaped Core ML functions, for families that have one.
    var aneLowering: ((LanguageModel) -> ANEModelLowering?)? {
        if case .decoder(_, let lowering) = network { return lowering }
        return nil
    }
    /// What `anelm convert` needs to move the family between GGUF and Hugging Face folders (nil: re-quantizing
    /// within a format only).
    var conversion: ModelConversion? = nil
    /// The weights LoRA adapters may adapt in a model of this family (nil: adapters are not supported), for
    /// `anelm convert --lora`; loading binds them itself.
    var loraTargets: ((ModelSource) throws -> LoRATargetNames)? = nil

    /// Whether its models lower to Core ML (a decoder's generation functions, an encoder's embedding functions).
    public var hasANELowering: Bool {
        if case .encoder(_, let lowering) = network { return lowering != nil }
        return aneLowering != nil
    }

    /// Whether its models are encoders (embedders) rather than language models.
    public var isEncoder: Bool {
        if case .encoder = network { return true }
        return false
    }
}

/// Architecture name → its family. A new family is one entry here (and its model files); nothing else
/// in the code base switches on architectures.
public enum ModelRegistry {
    public static let families: [ModelFamily] = [
        ModelFamily(
            name: "the Llama family (Llama 2/3.x, SmolLM2, Mistral, Qwen2/2.5)",
            architectures: ["llama", "mistral", "qwen2", "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"],
            configuration: LlamaConfiguration.init, load: LlamaModel.load,
            aneLowering: { ($0 as? LlamaModel).map(LlamaANELowering.init) }, conversion: .llama, loraTargets: LlamaModel.loraTargets),
        ModelFamily(
            name: "Gemma 3 text",
            architectures: ["gemma3", "Gemma3ForCausalLM", "gemma3_text"],
            configuration: Gemma3Configuration.init, load: Gemma3Model.load,
            aneLowering: { ($0 as? Gemma3Model).map(Gemma3ANELowering.init) }, conversion: .gemma3,
            loraTargets: Gemma3Model.loraTargets),
        ModelFamily(
            name: "xLSTM (mLSTM blocks, the xLSTM-7B design)",
            architectures: ["xLSTMForCausalLM", "xlstm"],
            configuration: XLSTMConfiguration.init, load: XLSTMModel.load,
            aneLowering: { ($0 as? XLSTMModel).map(XLSTMANELowering.init) }, conversion: .xlstm),
        ModelFamily(
            name: "BERT (text encoder: all-MiniLM, sentence-transformers models)",
            architectures: ["BertModel", "bert"],
            configuration: BertConfiguration.init, encoder: BertModel.load, aneLowering: { ($0 as? BertModel).map(BertANELowering.init) }),
    ]

    public static var supportedArchitectures: [String] { families.flatMap(\.architectures).sorted() }

    /// The family a file's architecture name belongs to; nil when anelm has none.
    public static func family(named architecture: String) -> ModelFamily? {
        families.first { $0.architectures.contains(architecture) }
    }

    /// The family of `source`, or an error naming the architecture and the supported ones.
    public static func family(of source: ModelSource) throws -> ModelFamily {
        let arch = try source.architecture()
        guard let family = family(named: arch) else {
            throw ANELMError("unknown architecture \(quoted(arch)); anelm supports: \(supportedArchitectures.joined(separator: ", "))")
        }
        return family
    }

    public static func build(_ source: ModelSource, options: LoadOptions, pool: ThreadPool) throws -> LanguageModel {
        let family = try family(of: source)
        switch family.network {
        case .decoder(let load, _):
            let model = try load(source, options, pool)
            guard options.lora.isEmpty || model.adapters != nil else { throw ANELMError("\(family.name) models take no LoRA adapters") }
            return model
        case .encoder:
            throw ANELMError("\(try source.architecture()) is a text encoder (\(family.name)), not a language model: use it with anelm embed")
        }
    }

    /// The ANE lowering of a loaded encoder, when its family has one.
    static func encoderLowering(_ encoder: EncoderModel) -> ANEEncoderModelLowering? {
        for family in families {
            if case .encoder(_, let lowering?) = family.network, let l = lowering(encoder) { return l }
        }
        return nil
    }

    /// The encoder of an embedding model's folder.
    public static func buildEncoder(_ source: ModelSource, options: LoadOptions, pool: ThreadPool) throws -> EncoderModel {
        let family = try family(of: source)
        switch family.network {
        case .encoder(let load, _): return try load(source, options, pool)
        case .decoder:
            throw ANELMError("\(try source.architecture()) is a language model (\(family.name)), not a text encoder: anelm embeds with BERT models")
        }
    }
}
