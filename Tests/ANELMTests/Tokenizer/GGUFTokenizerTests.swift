import ANELM
import Foundation
import XCTest

/// The real SmolLM2 GGUF's tokenizer against transformers' ids for the same file.
final class GGUFTokenizerTests: XCTestCase {
    private func loadTokenizer() throws -> Tokenizer {
        let environment = ProcessInfo.processInfo.environment
        let path =
            environment["ANELM_DEFAULT_MODEL"]
            ?? FileManager.default.homeDirectoryForCurrentUser
            .appendingPathComponent(".cache/anelm/models/SmolLM2-135M-Instruct.Q4_1.gguf").path
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("no GGUF at \(path)") }
        let file = try GGUFFile(path: path)
        return try Tokenizer(gguf: try GGUFTokenizerData(file))
    }

    func testSmolLM2MatchesTransformers() throws {
        let tokenizer = try loadTokenizer()
        let expected = try TokenizerFixtures.expectation("smollm2_gguf.json")
        XCTAssertEqual(tokenizer.vocabSize, expected.vocabSize)
        XCTAssertEqual(tokenizer.bosToken, expected.bosToken)
        XCTAssertEqual(tokenizer.eosToken, expected.eosToken)
        XCTAssertEqual(tokenizer.eosTokenIds, expected.eosTokenId.map { [$0] } ?? [])
        XCTAssertNotNil(tokenizer.chatTemplate)
        for testCase in expected.cases {
            let label = testCase.text.debugDescription
            XCTAssertEqual(tokenizer.encode(testCase.text), testCase.ids, label)
            XCTAssertEqual(tokenizer.encode(testCase.text, addSpecialTokens: false), testCase.idsNoSpecial, label)
            XCTAssertEqual(tokenizer.decode(testCase.ids), testCase.decoded, label)
            XCTAssertEqual(tokenizer.decode(testCase.ids, skipSpecialTokens: true), testCase.decodedSkipSpecial, label)

            var stream = StreamingDecoder(tokenizer: tokenizer)
            var pieces = testCase.ids.map { stream.append($0) }
            pieces.append(stream.flush())
            XCTAssertEqual(pieces.joined(), testCase.decoded, label)
            XCTAssertFalse(pieces.contains { $0.unicodeScalars.contains("\u{FFFD}") }, label)
        }
    }

    func testChatMarkersAreSingleTokens() throws {
        let tokenizer = try loadTokenizer()
        let ids = tokenizer.encode("<|im_start|>user\nhi<|im_end|>")
        XCTAssertEqual(ids.first, tokenizer.tokenId("<|im_start|>"))
        XCTAssertEqual(ids.last, tokenizer.tokenId("<|im_end|>"))
        XCTAssertEqual(tokenizer.decode(ids, skipSpecialTokens: true), "user\nhi")
    }
}
