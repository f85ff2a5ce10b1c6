import ANELM
import XCTest

/// What a crafted file can make anelm print: names from the file are escaped and cut, never raw bytes.
final class HostileFileTests: XCTestCase {
    func testErrorTextIsEscapedAndBounded() {
        let hostile = "tensor \u{1B}[2J\u{1B}]0;owned\u{07}\n" + String(repeating: "x", count: 100_000)
        let message = ANELMError(hostile).message
        XCTAssertFalse(message.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }, message)
        XCTAssertTrue(message.hasPrefix("tensor \\u{1b}[2J\\u{1b}]0;owned\\u{7}\\u{a}xxx"), message)
        XCTAssertLessThan(message.count, ANELMError.maximumLength + 40)
        XCTAssertTrue(message.hasSuffix("more characters)"), message)
        XCTAssertEqual(ANELMError("plain text — unicode é ok").message, "plain text — unicode é ok")
    }

    /// A tensor name of 200,000 bytes with escape sequences, and a bad dimension count after it: the error names the
    /// tensor by its first 80 characters, escaped.
    func testGGUFTensorNameInAnErrorIsQuotedSafely() throws {
        var w = GGUFWriter()
        w.metadata = [("general.architecture", .string("llama"))]
        let name = String(repeating: "\u{1B}[31mred", count: 25_000)
        w.tensors = [(name, [1, 1, 1, 1, 1], 0, floatBytes([0]))]  // five dimensions: refused
        let url = temporaryFile("hostile-name.gguf")
        try w.write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        XCTAssertThrowsError(try GGUFFile(path: url.path)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("has 5 dimensions"), text)
            XCTAssertFalse(text.unicodeScalars.contains { $0.value == 0x1B }, text)
            XCTAssertLessThan(text.count, 400, text)
        }
    }
}
