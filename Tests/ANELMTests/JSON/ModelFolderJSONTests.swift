import ANELM
import Foundation
import XCTest

/// config.json, generation_config.json and the other folder files go through the strict JSON parser.
final class ModelFolderJSONTests: XCTestCase {
    /// tiny-llama's text files (no weights) in a fresh folder, with `edits` written over them.
    private func folder(_ edits: [String: String]) throws -> URL {
        let source = ModelFixture.directory.appendingPathComponent("tiny-llama")
        let dir = temporaryFile("json-folder-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for name in ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"] {
            try FileManager.default.copyItem(at: source.appendingPathComponent(name), to: dir.appendingPathComponent(name))
        }
        for (name, text) in edits { try Data(text.utf8).write(to: dir.appendingPathComponent(name)) }
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    func testConfigAndGenerationConfigAreRead() throws {
        let dir = try folder(["generation_config.json": #"{"bos_token_id": 0, "eos_token_id": [4, 7]}"#])
        let opened = try HFModelFolder(path: dir.path, requiringWeights: false)
        XCTAssertEqual(try ModelSource.huggingFace(opened).architecture(), "LlamaForCausalLM")
        XCTAssertEqual(opened.config["model_type"], "llama")
        XCTAssertTrue(try ModelLoader.loadText(dir.path).endOfSequenceIds.isSuperset(of: [4, 7]))
    }

    func testDuplicateKeyInConfigIsAnErrorNamingIt() throws {
        let config = try String(contentsOf: folder([:]).appendingPathComponent("config.json"), encoding: .utf8)
        let doubled = config.replacingOccurrences(of: "{", with: "{\"hidden_size\": 1, ", options: [], range: config.range(of: "{"))
        let dir = try folder(["config.json": doubled])
        XCTAssertThrowsError(try HFModelFolder(path: dir.path, requiringWeights: false)) { error in
            XCTAssertTrue(
                "\(error)".hasSuffix(#"config.json: the key "hidden_size" appears twice in one object (JSON readers would disagree on its value)"#), "\(error)")
        }
    }

    func testBrokenGenerationConfigIsAnErrorNotIgnored() throws {
        let dir = try folder(["generation_config.json": #"{"eos_token_id": 4,}"#])
        XCTAssertThrowsError(try HFModelFolder(path: dir.path, requiringWeights: false)) { error in
            XCTAssertTrue("\(error)".contains("generation_config.json: invalid JSON at byte 19 (line 1)"), "\(error)")
        }
    }

    func testTokenizerErrorsNameThePath() throws {
        let dir = try folder(["tokenizer_config.json": #"{"add_bos_token": "yes"}"#])
        XCTAssertThrowsError(try ModelLoader.loadText(dir.path)) { error in
            XCTAssertEqual("\(error)", "tokenizer_config.json: add_bos_token: expected true or false, found a string")
        }
    }
}
