import Foundation

/// A Hugging Face model folder: config.json, safetensors weights (single or sharded), tokenizer
/// files, generation defaults.
public final class HFModelFolder: @unchecked Sendable {
    public let path: String
    public let configData: Data
    /// config.json as a dictionary.
    public let config: [String: Any]
    public let tensors: SafetensorsCollection
    public let weightFiles: [String]
    public let tokenizerJSONData: Data?
    public let tokenizerConfigData: Data?
    /// chat_template.jinja (or chat_template.json's "chat_template"), for folders that keep it apart.
    public let chatTemplateFile: String?
    /// generation_config.json, when present.
    public let generationConfig: [String: Any]?

    /// `requiringWeights: false` opens a folder of tokenizer and config files alone (no tensors).
    public init(path: String, requiringWeights: Bool = true) throws {
        self.path = path
        let folder = URL(fileURLWithPath: path)
        func file(_ name: String) -> URL { folder.appendingPathComponent(name) }
        func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: file(name).path) }
        func jsonObject(_ data: Data, _ name: String) throws -> [String: Any] {
            guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                throw ANELMError("\(name) in \(path) is not a JSON object")
            }
            return object
        }

        guard let config = try? Data(contentsOf: file("config.json")) else { throw ANELMError("no config.json in \(path); is it a Hugging Face model folder?") }
        configData = config
        self.config = try jsonObject(config, "config.json")

        var weightNames: [String]
        if exists("model.safetensors.index.json") {
            let index = try jsonObject(try Data(contentsOf: file("model.safetensors.index.json")), "model.safetensors.index.json")
            guard let map = index["weight_map"] as? [String: String] else {
                throw ANELMError("model.safetensors.index.json in \(path) has no weight_map")
            }
            weightNames = Array(Set(map.values)).sorted()
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
        } else if let data = try? Data(contentsOf: file("chat_template.json")),
                  let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] {
            chatTemplateFile = object["chat_template"] as? String
        } else {
            chatTemplateFile = nil
        }
        generationConfig = (try? Data(contentsOf: file("generation_config.json"))).flatMap { try? jsonObject($0, "generation_config.json") }
    }
}
