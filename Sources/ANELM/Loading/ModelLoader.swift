import Foundation

/// A model ready to generate: network, tokenizer, chat template and the file's defaults.
public final class LoadedModel {
    public let path: String
    public let source: ModelSource
    public let architecture: String
    public let model: LanguageModel
    public let tokenizer: Tokenizer
    /// The model's own Jinja chat template, when the file carries one.
    public let chatTemplate: String?
    /// Tokens that end a reply: the tokenizer's EOS plus generation_config.json's.
    public let endOfSequenceIds: Set<Int>
    public let pool: ThreadPool
    public let loadSeconds: Double
    /// Set when the file has no chat template and `chatTemplate` is this built-in one, its family's.
    public internal(set) var builtinTemplateName: String?

    public init(
        path: String, source: ModelSource, architecture: String, model: LanguageModel, tokenizer: Tokenizer, chatTemplate: String?, endOfSequenceIds: Set<Int>,
        pool: ThreadPool, loadSeconds: Double
    ) {
        self.path = path
        self.source = source
        self.architecture = architecture
        self.model = model
        self.tokenizer = tokenizer
        self.chatTemplate = chatTemplate
        self.endOfSequenceIds = endOfSequenceIds
        self.pool = pool
        self.loadSeconds = loadSeconds
    }

    /// A new independent sequence on this model, of at most `contextLength` tokens (nil: the model's context length).
    public func makeSession(contextLength: Int? = nil) -> GenerationSession {
        GenerationSession(model: model, tokenizer: tokenizer, endOfSequenceIds: endOfSequenceIds, contextLength: contextLength)
    }

    /// A short name for the model (file or folder name).
    public var name: String { URL(fileURLWithPath: path).lastPathComponent }
}

public enum ModelLoader {
    /// Opens a `.gguf` file or a Hugging Face folder, whichever `path` is.
    public static func open(_ path: String) throws -> ModelSource {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ANELMError("no model at \(path)")
        }
        if isDirectory.boolValue { return .huggingFace(try HFModelFolder(path: path)) }
        return .gguf(try GGUFFile(path: path))
    }

    public static func load(_ path: String, options: LoadOptions = LoadOptions()) throws -> LoadedModel {
        let start = DispatchTime.now()
        let source = try open(path)
        let architecture = try source.architecture()
        let threads = options.threads ?? ThreadPool.physicalCoreCount
        guard threads > 0, threads <= 1024 else { throw ANELMError("threads must be between 1 and 1024, got \(threads)") }
        let pool = ThreadPool(threads: threads)
        let text = try loadText(source, path: path)
        let model = try ModelRegistry.build(source, options: options, pool: pool)
        guard text.tokenizer.vocabSize <= model.vocabularySize else {
            throw ANELMError("the tokenizer has \(text.tokenizer.vocabSize) tokens but the model only \(model.vocabularySize)")
        }
        let loaded = LoadedModel(
            path: path, source: source, architecture: architecture, model: model, tokenizer: text.tokenizer, chatTemplate: text.chatTemplate,
            endOfSequenceIds: text.endOfSequenceIds, pool: pool, loadSeconds: seconds(since: start))
        loaded.builtinTemplateName = text.builtinTemplateName
        return loaded
    }

    /// Only the text side of a model (tokenizer, template, end tokens), without its weights: from a model
    /// file or folder, or from a folder of tokenizer files alone (an exported package's tokenizer folder:
    /// Hugging Face tokenizer and config files, or tokenizer.gguf).
    public static func loadText(_ path: String) throws -> ModelText {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            return try loadText(try open(path), path: path)
        }
        let gguf = URL(fileURLWithPath: path).appendingPathComponent("tokenizer.gguf").path
        if FileManager.default.fileExists(atPath: gguf) { return try loadText(.gguf(try GGUFFile(path: gguf)), path: gguf) }
        return try loadText(.huggingFace(try HFModelFolder(path: path, requiringWeights: false)), path: path)
    }

    static func loadText(_ source: ModelSource, path: String) throws -> ModelText {
        let own = try loadOwnText(source, path: path)
        guard own.chatTemplate == nil, let builtin = BuiltinChatTemplates.forArchitecture(try source.architecture()) else { return own }
        // A file without a template (the Gemma 3 270M GGUF) chats with its family's; the turn's end token ends replies.
        var endOfSequence = own.endOfSequenceIds
        if let id = own.tokenizer.tokenId(builtin.endOfTurn) { endOfSequence.insert(id) }
        return ModelText(tokenizer: own.tokenizer, chatTemplate: builtin.source, endOfSequenceIds: endOfSequence, builtinTemplateName: builtin.name)
    }

    private static func loadOwnText(_ source: ModelSource, path: String) throws -> ModelText {
        switch source {
        case .gguf(let file):
            let tokenizer = try Tokenizer(gguf: try GGUFTokenizerData(file))
            var endOfSequence = Set(tokenizer.eosTokenIds)
            if let eot = file.int("tokenizer.ggml.eot_token_id") { endOfSequence.insert(eot) }
            return ModelText(tokenizer: tokenizer, chatTemplate: file.string("tokenizer.chat_template"), endOfSequenceIds: endOfSequence)
        case .huggingFace(let folder):
            guard let json = folder.tokenizerJSONData else {
                throw ANELMError("no tokenizer.json in \(path); anelm needs the model's tokenizer")
            }
            let tokenizer = try Tokenizer(tokenizerJSON: json, tokenizerConfig: folder.tokenizerConfigData)
            var endOfSequence = Set(tokenizer.eosTokenIds)
            switch folder.generationConfig?["eos_token_id"] {
            case .int(let id)?: endOfSequence.insert(id)
            case .array(let ids)?: endOfSequence.formUnion(ids.compactMap(\.integerValue))
            default: break
            }
            return ModelText(tokenizer: tokenizer, chatTemplate: tokenizer.chatTemplate ?? folder.chatTemplateFile, endOfSequenceIds: endOfSequence)
        }
    }
}

/// The text side of a model.
public struct ModelText {
    public let tokenizer: Tokenizer
    public let chatTemplate: String?
    public let endOfSequenceIds: Set<Int>
    /// Set when the file has no template and `chatTemplate` is this built-in one, its family's.
    public var builtinTemplateName: String? = nil
}
