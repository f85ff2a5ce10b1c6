import Foundation

/// Opens a sentence-embedding model: a Hugging Face folder of a text encoder (config.json, model.safetensors,
/// tokenizer.json) with sentence-transformers' modules.json, its Pooling module's config and sentence_bert_config.json.
public enum EmbedderLoader {
    public static func load(_ url: URL, precision: Precision = .auto, threads: Int? = nil) throws -> any TextEmbedder {
        try loadPipeline(url, precision: precision, threads: threads)
    }

    /// The concrete pipeline (its tokenizer and inputs too: the CLI and server report truncation and usage).
    public static func loadPipeline(_ url: URL, precision: Precision = .auto, threads: Int? = nil) throws -> SentenceEmbedder {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else { throw ANELMError("no embedding model at \(url.path)") }
        guard isDirectory.boolValue else {
            throw ANELMError("\(url.path) is a file; an embedding model is a folder (config.json, model.safetensors, tokenizer.json, modules.json)")
        }
        let threadCount = threads ?? ThreadPool.physicalCoreCount
        guard threadCount > 0, threadCount <= 1024 else { throw ANELMError("threads must be between 1 and 1024, got \(threadCount)") }
        let folder = try HFModelFolder(path: url.path)
        guard let tokenizerJSON = folder.tokenizerJSONData else { throw ANELMError("no tokenizer.json in \(url.path); anelm needs the model's tokenizer") }
        let tokenizer = try Tokenizer(tokenizerJSON: tokenizerJSON, tokenizerConfig: folder.tokenizerConfigData)
        let pool = ThreadPool(threads: threadCount)
        let encoder = try ModelRegistry.buildEncoder(.huggingFace(folder), options: LoadOptions(precision: precision, threads: threadCount), pool: pool)
        guard tokenizer.vocabSize <= encoder.vocabularySize else {
            throw ANELMError("the tokenizer has \(tokenizer.vocabSize) tokens but the model only \(encoder.vocabularySize)")
        }

        let modules = try SentenceTransformerModules(folder: url, hiddenSize: encoder.hiddenSize)
        let settings = try json(url, "sentence_bert_config.json")
        let tokenizerConfig = try folder.tokenizerConfigData.map { try JSONNode.parseObject($0, source: "tokenizer_config.json") }
        // sentence-transformers: max_seq_length, else the smaller of the model's positions and the tokenizer's limit.
        var limit = encoder.maxPositions
        if let length = try settings.flatMap({ $0.isNull("max_seq_length") ? nil : try $0.int("max_seq_length") }) {
            limit = length
        } else if let node = tokenizerConfig, !node.isNull("model_max_length"), let tokenizerLimit = node.member("model_max_length").value.integerValue {
            limit = min(limit, tokenizerLimit)
        }
        guard limit > 0, limit <= encoder.maxPositions else {
            throw ANELMError("max_seq_length \(limit) is outside the model's 1…\(encoder.maxPositions) positions")
        }
        return try SentenceEmbedder(
            identifier: try identifier(url, folder: folder), encoder: encoder, tokenizer: tokenizer, pooling: modules.pooling,
            normalizes: modules.normalizes, maxSequenceLength: limit, lowercasesInput: try settings?.bool("do_lower_case", default: false) ?? false)
    }

    static func json(_ folder: URL, _ name: String) throws -> JSONNode? {
        let file = folder.appendingPathComponent(name)
        guard let data = try? Data(contentsOf: file) else { return nil }
        return try JSONNode.parseObject(data, source: file.path)
    }

    /// The folder's name and a hash of its configuration files and a sample of its weights: a changed model
    /// gets a new identifier, and computing it reads ~1% of the weights.
    static func identifier(_ url: URL, folder: HFModelFolder) throws -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ bytes: UnsafeRawBufferPointer, stride: Int = 1) {
            var i = 0
            while i < bytes.count {
                hash = (hash ^ UInt64(bytes[i])) &* 0x100_0000_01b3
                i += stride
            }
        }
        for name in ["config.json", "modules.json", "1_Pooling/config.json", "sentence_bert_config.json", "tokenizer.json"] {
            if let data = try? Data(contentsOf: url.appendingPathComponent(name)) { data.withUnsafeBytes { mix($0) } }
        }
        for file in folder.weightFiles {
            let mapped = try MappedFile(path: file)
            withUnsafeBytes(of: mapped.bytes.count) { mix($0) }
            mix(mapped.bytes, stride: 97)
        }
        return "\(url.lastPathComponent)@\(String(hash, radix: 16).suffix(12))"
    }
}

/// modules.json: the encoder at the folder's root, then a Pooling module and an optional Normalize. A folder
/// without modules.json is a plain encoder, which sentence-transformers mean-pools without normalizing.
struct SentenceTransformerModules {
    var pooling: Pooling = .mean
    var normalizes = false

    init(folder: URL, hiddenSize: Int) throws {
        let file = folder.appendingPathComponent("modules.json")
        guard let data = try? Data(contentsOf: file) else { return }
        let root = JSONNode(try JSONValue.parse(data, source: file.path), path: JSONPath(source: file.path))
        let modules = try root.items()
        var sawPooling = false
        for (index, module) in modules.enumerated() {
            let type = try module.string("type")
            let kind = type.split(separator: ".").last.map(String.init) ?? type
            switch kind {
            case "Transformer" where index == 0:
                guard (try module.optionalString("path") ?? "").isEmpty else {
                    throw module.member("path").error("anelm reads the Transformer module from the folder's root")
                }
            case "Pooling" where index == 1:
                let path = try module.string("path")
                guard !path.contains(".."), let config = try EmbedderLoader.json(folder, path + "/config.json") else {
                    throw module.member("path").error("no config.json in the Pooling module's folder \(quoted(path))")
                }
                pooling = try Pooling(config, hiddenSize: hiddenSize)
                sawPooling = true
            case "Normalize" where index == modules.count - 1 && sawPooling:
                normalizes = true
            default:
                throw module.error("module \(quoted(type)) at position \(index) is not supported (anelm runs Transformer → Pooling → optional Normalize)")
            }
        }
        guard sawPooling else { throw root.error("modules.json has no Pooling module after the Transformer") }
    }
}
