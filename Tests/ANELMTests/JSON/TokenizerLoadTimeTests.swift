import ANELM
import Foundation
import XCTest

/// Times `Tokenizer(tokenizerJSON:)` on a large file (made by tools/json-bench/make-big-tokenizer); skipped unless
/// ANELM_TOKENIZER_TIMING_FILE names one, since the fixtures are too small to time a parser on.
final class TokenizerLoadTimeTests: XCTestCase {
    func testTokenizerLoadTime() throws {
        guard let path = ProcessInfo.processInfo.environment["ANELM_TOKENIZER_TIMING_FILE"] else {
            throw XCTSkip("set ANELM_TOKENIZER_TIMING_FILE to a large tokenizer.json")
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        var seconds: [Double] = []
        for _ in 0..<7 {
            let start = DispatchTime.now().uptimeNanoseconds
            let tokenizer = try Tokenizer(tokenizerJSON: data, tokenizerConfig: nil)
            seconds.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            XCTAssertGreaterThan(tokenizer.vocabSize, 262_000)
        }
        seconds.sort()
        print(
            String(
                format: "tokenizer load, %d bytes: min %.3f s, median %.3f s, max %.3f s", data.count,
                seconds[0], seconds[seconds.count / 2], seconds[seconds.count - 1]))
    }
}
