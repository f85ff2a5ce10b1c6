import ANELM
import Foundation
import XCTest

import ANELMContext

/// A deterministic embedder for tests: each word (lowercased letters and digits) adds 1 to a bucket chosen by its
/// FNV-1a hash, and the vector is L2-normalized — a hashed bag of words. It is not a language model, and that is
/// honest for what these tests check (the store, retrieval, the analyzer and training work on whatever vectors an
/// embedder gives); the real embedder is tested by its own suite. A token is a word.
final class HashingEmbedder: TextEmbedder {
    let dimensions: Int
    let maxSequenceLength = 512
    var identifier: String { "test-hashing-\(dimensions)" }
    /// Batches embedded so far; `failAfterBatches` makes the next batch throw (an interrupted index run).
    var batches = 0
    var failAfterBatches: Int?

    init(dimensions: Int = 64) { self.dimensions = dimensions }

    func tokenCount(of text: String) throws -> Int { Retriever.tokens(text).count }

    func embed(_ texts: [String]) throws -> [[Float]] {
        if let failAfterBatches, batches >= failAfterBatches { throw ANELMError("embedder stopped (test)") }
        batches += 1
        return texts.map { text in
            var v = [Float](repeating: 0, count: dimensions)
            for word in Retriever.tokens(text) {
                var h: UInt64 = 0xcbf2_9ce4_8422_2325
                for b in word.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
                v[Int(h % UInt64(dimensions))] += 1
            }
            let n = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
            return n > 0 ? v.map { $0 / n } : v
        }
    }
}

/// A fresh temporary folder, removed when the test ends.
func temporaryFolder(_ test: XCTestCase) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("anelm-context-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}

func write(_ text: String, to url: URL) throws {
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try Data(text.utf8).write(to: url)
}

/// The message of the error `body` throws, or a failure.
func errorMessage(_ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) -> String {
    do {
        try body()
        XCTFail("expected an error", file: file, line: line)
        return ""
    } catch let error as ANELMError {
        return error.message
    } catch {
        XCTFail("expected an ANELMError, got \(error)", file: file, line: line)
        return ""
    }
}
