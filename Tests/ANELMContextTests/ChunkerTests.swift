import ANELM
import Foundation
import XCTest

import ANELMContext

final class ChunkerTests: XCTestCase {
    let embedder = HashingEmbedder()
    func count(_ s: String) throws -> Int { try embedder.tokenCount(of: s) }

    /// A paragraph of `n` distinct words tagged with `tag`.
    func paragraph(_ tag: String, _ n: Int) -> String { (0..<n).map { "\(tag)w\($0)" }.joined(separator: " ") }

    func testChunksAreExactByteRangesWithinTheTokenLimit() throws {
        let text = (0..<12).map { paragraph("p\($0)", 7 + $0 % 5) }.joined(separator: "\n\n") + "\n"
        let chunker = try Chunker(maxTokens: 30, overlapTokens: 10)
        let chunks = try chunker.chunks(of: text, markdown: false, countTokens: count)
        XCTAssertGreaterThan(chunks.count, 3)
        let bytes = Array(text.utf8)
        for c in chunks {
            XCTAssertEqual(c.text, String(decoding: bytes[c.startByte..<c.endByte], as: UTF8.self))
            XCTAssertLessThanOrEqual(c.tokenCount, 30)
            XCTAssertEqual(c.tokenCount, try count(c.text))
        }
        // Every paragraph is in some chunk, and chunks start at paragraph starts.
        for i in 0..<12 { XCTAssertTrue(chunks.contains { $0.text.contains("p\(i)w0 ") }, "paragraph \(i)") }
        for c in chunks { XCTAssertTrue(c.text.hasPrefix("p") && c.text.contains("w0 "), c.text) }
    }

    func testConsecutiveChunksOverlapByWholeParagraphs() throws {
        let text = (0..<6).map { paragraph("p\($0)", 8) }.joined(separator: "\n\n")
        let chunks = try Chunker(maxTokens: 20, overlapTokens: 8).chunks(of: text, markdown: false, countTokens: count)
        // 8-word paragraphs, 20 tokens: two per chunk, and the second opens the next chunk.
        XCTAssertEqual(chunks.map { Retriever.tokens($0.text).first ?? "" }, ["p0w0", "p1w0", "p2w0", "p3w0", "p4w0"])
        for (a, b) in zip(chunks, chunks.dropFirst()) { XCTAssertLessThan(b.startByte, a.endByte, "overlap") }
        // Without overlap, chunks tile the text.
        let tiled = try Chunker(maxTokens: 20, overlapTokens: 0).chunks(of: text, markdown: false, countTokens: count)
        XCTAssertEqual(tiled.count, 3)
        for (a, b) in zip(tiled, tiled.dropFirst()) { XCTAssertGreaterThan(b.startByte, a.endByte) }
    }

    func testHeadingsStartChunksAndNameTheirPath() throws {
        let text = """
            # Guide

            intro words here

            ## Install

            run the installer now

            ### Linux

            use apt get

            ## Use

            call the tool
            """
        let chunks = try Chunker(maxTokens: 100, overlapTokens: 10).chunks(of: text, markdown: true, countTokens: count)
        XCTAssertEqual(chunks.map(\.headingPath), ["Guide", "Guide › Install", "Guide › Install › Linux", "Guide › Use"])
        XCTAssertEqual(chunks[1].text, "## Install\n\nrun the installer now")
        // Without markdown, '#' lines are text.
        let plain = try Chunker(maxTokens: 100, overlapTokens: 10).chunks(of: text, markdown: false, countTokens: count)
        XCTAssertEqual(plain.count, 1)
        XCTAssertEqual(plain[0].headingPath, "")
    }

    func testALongParagraphIsCutAtWhitespace() throws {
        let text = paragraph("long", 95) + "\n\n" + "tail words"
        let chunks = try Chunker(maxTokens: 20, overlapTokens: 0).chunks(of: text, markdown: false, countTokens: count)
        let words = chunks.flatMap { Retriever.tokens($0.text) }
        XCTAssertEqual(words, Retriever.tokens(text), "every word once, in order")
        for c in chunks { XCTAssertLessThanOrEqual(c.tokenCount, 20) }
        // A word longer than anything (no whitespace) is cut at a character boundary.
        let blob = String(repeating: "é", count: 50)
        let pieces = try Chunker(maxTokens: 8, overlapTokens: 0).chunks(of: blob, markdown: false) { Int(ceil(Double($0.count) / 4)) }
        XCTAssertEqual(pieces.map(\.text).joined(), blob)
        XCTAssertTrue(pieces.allSatisfy { $0.tokenCount <= 8 })
    }

    func testEmptyAndBlankTextsHaveNoChunks() throws {
        let chunker = try Chunker()
        XCTAssertEqual(try chunker.chunks(of: "", markdown: true, countTokens: count), [])
        XCTAssertEqual(try chunker.chunks(of: "\n \n\t\n", markdown: false, countTokens: count), [])
    }

    func testBadSizesAreRefused() {
        XCTAssertTrue(errorMessage { _ = try Chunker(maxTokens: 4) }.contains("at least 8"))
        XCTAssertTrue(errorMessage { _ = try Chunker(maxTokens: 100, overlapTokens: 60) }.contains("--overlap-tokens"))
    }
}
