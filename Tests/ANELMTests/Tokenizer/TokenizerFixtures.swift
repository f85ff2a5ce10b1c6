import Foundation
import XCTest

/// Expected ids and decodes that tools/reference/tokenizer_fixtures.py wrote from transformers.
struct TokenizerExpectation: Decodable {
    struct Case: Decodable {
        let text: String
        let ids: [Int]
        let idsNoSpecial: [Int]
        let decoded: String
        let decodedSkipSpecial: String
    }
    let vocabSize: Int
    let bosToken: String?
    let eosToken: String?
    let eosTokenId: Int?
    let cases: [Case]
}

enum TokenizerFixtures {
    /// Tests/Fixtures/tokenizer, found by walking up from this source file.
    static func directory(file: String = #filePath) throws -> URL {
        var url = URL(fileURLWithPath: file).deletingLastPathComponent()
        while url.path != "/" {
            let candidate = url.appendingPathComponent("Fixtures/tokenizer")
            if FileManager.default.fileExists(atPath: candidate.path) { return candidate }
            url.deleteLastPathComponent()
        }
        throw XCTSkip("Tests/Fixtures/tokenizer not found above \(file)")
    }

    static func expectation(_ relativePath: String) throws -> TokenizerExpectation {
        let data = try Data(contentsOf: directory().appendingPathComponent(relativePath))
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(TokenizerExpectation.self, from: data)
    }
}
