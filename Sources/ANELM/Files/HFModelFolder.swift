import Foundation

/// A Hugging Face model folder: config.json, safetensors weights (single or sharded), tokenizer
/// files, generation defaults.
public final class HFModelFolder: @unchecked Sendable {
    public let path: String
    public let configData: Data
    /// config.json, an object.
    public let config: JSONValue
    public let tensors: SafetensorsCollection
    public let weightFiles: [String]
    public let tokenizerJSONData: Data?
    public let tokenizerConfigData: Data?
    /// chat_template.jinja (or chat_template.json's "chat_template"), for folders that keep it apart.
    public let chatTemplateFile: String?
    /// generation_config.json (an object), when present.
    public let generationConfig: JSONValue?

    /// `requiringWeights: false` opens a folder of tokenizer and config files alone (no tensors).
    public init(path: String, requiringWeights: Bool = true) throws {
        self.path = path
        let folder = URL(fileURLWithPath: path)
        func file(_ name: String) -> URL { folder.appendingPathComponent(name) }
        func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: file(name).path) }
        func jsonObject(_ data: Data, _ name: String) throws -> JSONNode {
            try JSONNode.parseObject(data, source: file(name).path)
        }

        guard let config = try? Data(contentsOf: file("config.json")) else { throw ANELMError("no config.json in \(path); is it a Hugging Face model folder?") }
        configData = config
        self.config = try jsonObject(config, "config.json").value

        var weightNames: [String]
        if exists("model.safetensors.index.json") {
            let index = try jsonObject(try Data(contentsOf: file("model.safetensors.index.json")), "model.safetensors.index.json")
            let map = try index.object("weight_map")
            weightNames = Array(Set(try map.objectValue().keys.map { try map.string($0) })).sorted()
            guard weightNames.allSatisfy({ !$0.contains("/") && !$0.hasPrefix(".") }) else {
                throw ANELMError("model.safetensors.index.json names a shard outside the folder")
            }
        } else if exists("model.safetensors") {
            weightNames = ["model.safetensors"]
        } else if !requiringWeights {
            weightNames = []
        } else {
            throw ANELMError("no model.safetensors or model.safetensors.index.json in \(path) (anelm reads safetensors weights)")
        }
        weightFiles = weightNames.map { file($0).path }
        tensors = try SafetensorsCollection(files: weightFiles.map { try SafetensorsFile(path: $0) })

        tokenizerJSONData = try? Data(contentsOf: file("tokenizer.json"))
        tokenizerConfigData = try? Data(contentsOf: file("tokenizer_config.json"))
        if let jinja = try? String(contentsOf: file("chat_template.jinja"), encoding: .utf8) {
            chatTemplateFile = jinja
        } else if let data = try? Data(contentsOf: file("chat_template.json")) {
            chatTemplateFile = try jsonObject(data, "chat_template.json").optionalString("chat_template")
        } else {
            chatTemplateFile = nil
        }
        generationConfig = try (try? Data(contentsOf: file("generation_config.json"))).map { try jsonObject($0, "generation_config.json").value }
    }
}
