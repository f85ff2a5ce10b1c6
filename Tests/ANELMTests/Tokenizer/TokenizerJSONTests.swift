import ANELM
import Foundation
import XCTest

/// Tokenizers trained by the fixture script, loaded from tokenizer.json + tokenizer_config.json.
final class TokenizerJSONTests: XCTestCase {
    private func load(_ name: String) throws -> Tokenizer {
        let folder = try TokenizerFixtures.directory().appendingPathComponent(name)
        let json = try Data(contentsOf: folder.appendingPathComponent("tokenizer.json"))
        let config = try Data(contentsOf: folder.appendingPathComponent("tokenizer_config.json"))
        return try Tokenizer(tokenizerJSON: json, tokenizerConfig: config)
    }

    private func assertMatchesTransformers(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let tokenizer = try load(name)
        let expected = try TokenizerFixtures.expectation("\(name)/expected.json")
        TokenizerFixtures.assertMatches(tokenizer, expected, name: name, file: file, line: line)
    }

    func testLlama3StyleMatchesTransformers() throws { try assertMatchesTransformers("llama3_bpe") }

    func testQwen2StyleMatchesTransformers() throws { try assertMatchesTransformers("qwen2_bpe") }

    func testChatTemplates() throws {
        // Llama-3 style config stores a list of named templates: "default" is taken.
        let llama = try XCTUnwrap(try load("llama3_bpe").chatTemplate)
        XCTAssertTrue(llama.hasPrefix("{{ bos_token }}"))
        let qwen = try XCTUnwrap(try load("qwen2_bpe").chatTemplate)
        XCTAssertTrue(qwen.contains("<|im_start|>"))
    }

    func testSpecialTokenInlineIsOneToken() throws {
        let tokenizer = try load("qwen2_bpe")
        let ids = tokenizer.encode("<|im_start|>user", addSpecialTokens: false)
        XCTAssertEqual(ids.first, tokenizer.tokenId("<|im_start|>"))
        XCTAssertEqual(tokenizer.tokenString(ids[0]), "<|im_start|>")
        XCTAssertTrue(tokenizer.isSpecialToken(ids[0]))
    }

    func testUnknownIdsAreSkippedInDecode() throws {
        let tokenizer = try load("llama3_bpe")
        let ids = tokenizer.encode("Hello", addSpecialTokens: false)
        XCTAssertEqual(tokenizer.decode([-5] + ids + [1_000_000]), "Hello")
        XCTAssertNil(tokenizer.tokenString(1_000_000))
    }

    /// Streaming over emoji and CJK, token by token, must rebuild the full decode and emit only whole scalars.
    func testStreamingDecoderOverMultiByteText() throws {
        for name in ["llama3_bpe", "qwen2_bpe"] {
            let tokenizer = try load(name)
            let expected = try TokenizerFixtures.expectation("\(name)/expected.json")
            for testCase in expected.cases {
                var stream = StreamingDecoder(tokenizer: tokenizer)
                var pieces: [String] = []
                for id in testCase.ids { pieces.append(stream.append(id)) }
                pieces.append(stream.flush())
                XCTAssertEqual(pieces.joined(), testCase.decoded, "\(name): \(testCase.text.debugDescription)")
                for piece in pieces {
                    XCTAssertFalse(piece.unicodeScalars.contains("\u{FFFD}"), "half a character in \(piece.debugDescription)")
                }
            }
        }
    }

    func testStreamingFlushReplacesInvalidBytes() throws {
        let tokenizer = try load("qwen2_bpe")
        // "😀" is four bytes; stop after the first token of it and flush.
        let ids = tokenizer.encode("😀", addSpecialTokens: false)
        XCTAssertGreaterThan(ids.count, 1)
        var stream = StreamingDecoder(tokenizer: tokenizer)
        XCTAssertEqual(stream.append(ids[0]), "")
        XCTAssertEqual(stream.flush(), "\u{FFFD}")
    }

    func testBadTokenizerJSONThrowsANELMError() throws {
        let folder = try TokenizerFixtures.directory().appendingPathComponent("qwen2_bpe")
        let good = try Data(contentsOf: folder.appendingPathComponent("tokenizer.json"))
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: good) as? [String: Any])
        let model = try XCTUnwrap(root["model"] as? [String: Any])

        func variant(_ edit: (inout [String: Any]) -> Void) throws -> Data {
            var copy = root
            edit(&copy)
            return try JSONSerialization.data(withJSONObject: copy)
        }
        let cases: [(String, Data)] = [
            ("truncated", good.prefix(good.count / 2)),
            ("empty", Data()),
            ("not an object", Data("[1, 2, 3]".utf8)),
            ("unknown model", try variant { $0["model"] = model.merging(["type": "WordPiece"]) { $1 } }),
            ("vocab is a list", try variant { $0["model"] = model.merging(["vocab": [1, 2]]) { $1 } }),
            ("vocab id is a string", try variant { $0["model"] = model.merging(["vocab": ["a": "1"]]) { $1 } }),
            ("merges wrong type", try variant { $0["model"] = model.merging(["merges": "a b"]) { $1 } }),
            ("merge out of vocabulary", try variant { $0["model"] = model.merging(["merges": ["zz qq"]]) { $1 } }),
            ("model missing", try variant { $0["model"] = nil }),
            ("unknown pre-tokenizer", try variant { $0["pre_tokenizer"] = ["type": "Whitespace"] }),
            (
                "unknown split regex",
                try variant {
                    $0["pre_tokenizer"] = ["type": "Split", "pattern": ["Regex": "\\w+"], "behavior": "Isolated", "invert": false]
                }
            ),
            ("unknown normalizer", try variant { $0["normalizer"] = ["type": "Precompiled"] }),
            ("unknown decoder", try variant { $0["decoder"] = ["type": "Mystery"] }),
            ("unknown post-processor", try variant { $0["post_processor"] = ["type": "Mystery"] }),
            ("added token without id", try variant { $0["added_tokens"] = [["content": "x"]] }),
        ]
        for (label, data) in cases {
            XCTAssertThrowsError(try Tokenizer(tokenizerJSON: data, tokenizerConfig: nil), label) { error in
                XCTAssertTrue(error is ANELMError, "\(label): \(error)")
            }
        }
        XCTAssertThrowsError(try Tokenizer(tokenizerJSON: good, tokenizerConfig: Data("{".utf8))) { error in
            XCTAssertTrue(error is ANELMError)
        }
    }

    func testGGUFDataWithUnsupportedModelThrows() {
        for (model, pre) in [("llama", "default"), ("bert", "default"), ("gpt2", "made-up-pre")] {
            let data = GGUFTokenizerData(model: model, preTokenizer: pre, tokens: ["a"], merges: [])
            XCTAssertThrowsError(try Tokenizer(gguf: data)) { XCTAssertTrue($0 is ANELMError, "\($0)") }
        }
    }

    /// About 1 MB of mixed text must encode well under a second (release build).
    func testEncodingOneMegabyteIsFast() throws {
        #if DEBUG
            throw XCTSkip("timing is only meaningful in release builds")
        #else
            let tokenizer = try load("llama3_bpe")
            let expected = try TokenizerFixtures.expectation("llama3_bpe/expected.json")
            let sample = expected.cases.map(\.text).joined(separator: "\n")
            var text = ""
            var counter = 0
            while text.utf8.count < 1_000_000 {
                text += sample + " \(counter) "
                counter += 1
            }
            let start = Date()
            let ids = tokenizer.encode(text)
            let seconds = Date().timeIntervalSince(start)
            print("encoded \(text.utf8.count) bytes into \(ids.count) tokens in \(seconds) s")
            XCTAssertGreaterThan(ids.count, 100_000)  // the time is reported, not asserted: speed lives in benchmarks
        #endif
    }
}
