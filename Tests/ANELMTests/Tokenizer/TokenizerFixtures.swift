import ANELM
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

    /// The tokenizer against a fixture: vocabulary size, BOS/EOS, and for every text the ids with and
    /// without special tokens and both decodes.
    static func assertMatches(
        _ tokenizer: Tokenizer, _ expected: TokenizerExpectation, name: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(tokenizer.vocabSize, expected.vocabSize, "vocab size", file: file, line: line)
        XCTAssertEqual(tokenizer.bosToken, expected.bosToken, file: file, line: line)
        XCTAssertEqual(tokenizer.eosToken, expected.eosToken, file: file, line: line)
        XCTAssertEqual(tokenizer.eosTokenIds, expected.eosTokenId.map { [$0] } ?? [], file: file, line: line)
        for testCase in expected.cases {
            let label = "\(name): \(testCase.text.debugDescription)"
            XCTAssertEqual(tokenizer.encode(testCase.text), testCase.ids, label, file: file, line: line)
            XCTAssertEqual(
                tokenizer.encode(testCase.text, addSpecialTokens: false), testCase.idsNoSpecial, label, file: file, line: line)
            XCTAssertEqual(tokenizer.decode(testCase.ids), testCase.decoded, label, file: file, line: line)
            XCTAssertEqual(
                tokenizer.decode(testCase.ids, skipSpecialTokens: true), testCase.decodedSkipSpecial, label,
                file: file, line: line)
        }
    }
}
