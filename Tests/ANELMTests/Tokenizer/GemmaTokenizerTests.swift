import ANELM
import Foundation
import XCTest

/// SentencePiece-style (Gemma) tokenizers against transformers: the real Gemma 3 GGUF and a tiny tokenizer.json
/// of the same shape, both from tools/reference/gemma_tokenizer_fixtures.py.
final class GemmaTokenizerTests: XCTestCase {
    /// Decodes of hand-picked ids, some with byte tokens that are not valid UTF-8.
    private struct RawDecodes: Decodable {
        struct Entry: Decodable {
            let ids: [Int]
            let decoded: String
        }
        let rawDecodes: [Entry]
    }

    private static func loadGGUF() throws -> Tokenizer {
        guard let path = gemmaModelPath() else { throw XCTSkip("Gemma 3 270M not installed (scripts/fetch-gemma3)") }
        return try Tokenizer(gguf: try GGUFTokenizerData(GGUFFile(path: path)))
    }

    private static func loadTiny() throws -> Tokenizer {
        let folder = try TokenizerFixtures.directory().appendingPathComponent("gemma_spm_bpe")
        return try Tokenizer(
            tokenizerJSON: try Data(contentsOf: folder.appendingPathComponent("tokenizer.json")),
            tokenizerConfig: try Data(contentsOf: folder.appendingPathComponent("tokenizer_config.json")))
    }

    private func assertMatches(
        _ tokenizer: Tokenizer, _ fixture: String, file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let expected = try TokenizerFixtures.expectation(fixture)
        TokenizerFixtures.assertMatches(tokenizer, expected, name: fixture, file: file, line: line)
        for testCase in expected.cases {
            let label = "\(fixture): \(testCase.text.debugDescription)"
            // Byte-fallback tokens of one character arrive one by one: no half characters, same text in the end.
            var stream = StreamingDecoder(tokenizer: tokenizer)
            var pieces = testCase.ids.map { stream.append($0) }
            pieces.append(stream.flush())
            XCTAssertEqual(pieces.joined(), testCase.decoded, label, file: file, line: line)
            XCTAssertFalse(pieces.contains { $0.unicodeScalars.contains("\u{FFFD}") }, label, file: file, line: line)
        }

        let data = try Data(contentsOf: TokenizerFixtures.directory().appendingPathComponent(fixture))
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let raw = try decoder.decode(RawDecodes.self, from: data)
        XCTAssertFalse(raw.rawDecodes.isEmpty, file: file, line: line)
        for entry in raw.rawDecodes {
            XCTAssertEqual(tokenizer.decode(entry.ids), entry.decoded, "\(entry.ids)", file: file, line: line)
        }
    }

    func testTinyTokenizerJSONMatchesTransformers() throws {
        try assertMatches(try Self.loadTiny(), "gemma_spm_bpe/expected.json")
    }

    func testGemma3GGUFMatchesTransformers() throws {
        try assertMatches(try Self.loadGGUF(), "gemma3_gguf.json")
    }

    func testGemma3GGUFTurnMarkersAreSpecialTokens() throws {
        let tokenizer = try Self.loadGGUF()
        let ids = tokenizer.encode("<start_of_turn>user\nhi<end_of_turn>", addSpecialTokens: false)
        XCTAssertEqual(ids.first, tokenizer.tokenId("<start_of_turn>"))
        XCTAssertEqual(ids.last, tokenizer.tokenId("<end_of_turn>"))
        XCTAssertTrue(tokenizer.isSpecialToken(ids[0]))
        XCTAssertEqual(tokenizer.decode(ids, skipSpecialTokens: true), "user\nhi")
    }

    func testStreamingHoldsBackPartialByteFallbackCharacter() throws {
        let tokenizer = try Self.loadTiny()
        // "中" is not in the tiny vocabulary, so it is three byte tokens.
        let bytes = ["<0xE4>", "<0xB8>", "<0xAD>"].compactMap { tokenizer.tokenId($0) }
        XCTAssertEqual(bytes.count, 3)
        var stream = StreamingDecoder(tokenizer: tokenizer)
        XCTAssertEqual(bytes.map { stream.append($0) }, ["", "", "中"])
        XCTAssertEqual(stream.flush(), "")
        // A run cut short by another token shows U+FFFD per byte, as transformers' decode does.
        let hello = tokenizer.encode("Hello", addSpecialTokens: false)
        var cut = StreamingDecoder(tokenizer: tokenizer)
        let text = ([bytes[0], bytes[1]] + hello).map { cut.append($0) }.joined() + cut.flush()
        XCTAssertEqual(text, tokenizer.decode([bytes[0], bytes[1]] + hello))
    }

    /// Builds the 262k-token vocabulary (merges rebuilt from it) and reports the time (not asserted:
    /// speed lives in benchmarks; ~0.4 s on an idle 2-core machine).
    func testGemma3GGUFLoadsFast() throws {
        #if DEBUG
            throw XCTSkip("timing is only meaningful in release builds")
        #else
            guard let path = gemmaModelPath() else { throw XCTSkip("Gemma 3 270M not installed (scripts/fetch-gemma3)") }
            let data = try GGUFTokenizerData(GGUFFile(path: path))
            let start = Date()
            let tokenizer = try Tokenizer(gguf: data)
            let seconds = Date().timeIntervalSince(start)
            print("built the Gemma 3 tokenizer (\(tokenizer.vocabSize) tokens) in \(seconds) s")
            XCTAssertEqual(tokenizer.vocabSize, 262_144)
        #endif
    }

    func testUnsupportedSentencePieceVariantsThrow() throws {
        let tokens = ["<unk>", "<s>", "</s>", "a", "b", "ab"]
        for (model, architecture) in [("llama", "llama"), ("llama", nil), ("t5", "t5"), ("gemma4", "gemma4")] {
            let data = GGUFTokenizerData(
                model: model, tokens: tokens, merges: [], architecture: architecture, scores: [0, 0, 0, -1, -2, -3])
            XCTAssertThrowsError(try Tokenizer(gguf: data), "\(model) \(architecture ?? "nil")") { error in
                XCTAssertTrue(error is ANELMError, "\(error)")
                XCTAssertTrue("\(error)".contains("unsupported"), "\(error)")
            }
        }

        let folder = try TokenizerFixtures.directory().appendingPathComponent("gemma_spm_bpe")
        let good = try Data(contentsOf: folder.appendingPathComponent("tokenizer.json"))
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: good) as? [String: Any])
        let model = try XCTUnwrap(root["model"] as? [String: Any])
        func variant(_ edit: (inout [String: Any]) -> Void) throws -> Data {
            var copy = root
            edit(&copy)
            return try JSONSerialization.data(withJSONObject: copy)
        }
        let cases: [(String, Data)] = [
            ("unigram", try variant { $0["model"] = model.merging(["type": "Unigram"]) { $1 } }),
            (
                "metaspace",
                try variant {
                    $0["pre_tokenizer"] = ["type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "first"]
                }
            ),
            (
                "regex replace",
                try variant {
                    $0["normalizer"] = ["type": "Replace", "pattern": ["Regex": " +"], "content": "\u{2581}"]
                }
            ),
            (
                "byte fallback before replace",
                try variant {
                    $0["decoder"] = [
                        "type": "Sequence",
                        "decoders": [
                            ["type": "ByteFallback"], ["type": "Fuse"],
                            ["type": "Replace", "pattern": ["String": "\u{2581}"], "content": " "],
                        ],
                    ]
                }
            ),
            (
                "split contiguous",
                try variant {
                    $0["pre_tokenizer"] = ["type": "Split", "pattern": ["String": " "], "behavior": "Contiguous", "invert": false]
                }
            ),
        ]
        for (label, data) in cases {
            XCTAssertThrowsError(try Tokenizer(tokenizerJSON: data, tokenizerConfig: nil), label) { error in
                XCTAssertTrue(error is ANELMError, "\(label): \(error)")
            }
        }
    }
}
