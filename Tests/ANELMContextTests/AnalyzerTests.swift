import ANELM
import Foundation
import XCTest

import ANELMContext

final class AnalyzerTests: XCTestCase {
    let embedder = HashingEmbedder()
    func vector(_ text: String) throws -> [Float] { try embedder.embed([text])[0] }

    func sources(_ texts: [String]) throws -> [(number: Int, text: String, vector: [Float])] {
        try texts.enumerated().map { ($0.offset + 1, $0.element, try vector($0.element)) }
    }

    func testCitationsAreParsed() {
        XCTAssertEqual(UsageAnalyzer.citations(in: "Yes [1]. Also [2, 3] and [4][5]."), [1, 2, 3, 4, 5])
        XCTAssertEqual(UsageAnalyzer.citations(in: "[a] [1a] [] [ 7 ] [x, 2]"), [7])
        XCTAssertEqual(UsageAnalyzer.citations(in: "unclosed [3"), [])
    }

    func testTheRuleCitationThenWordingThenMeaning() throws {
        let s = try sources([
            "The capital of France is Paris, on the Seine.",
            "Lyon is known for its cuisine and silk weaving history.",
            "Marseille is a port city on the Mediterranean coast.",
            "Bordeaux produces red wine from merlot grapes.",
            "Mountains are tall.",
        ])
        let answer = "Paris is the capital [1]. It is known for its cuisine and silk, like Lyon. Marseille, on the Mediterranean, is a coast port city."
        let reasons = try UsageAnalyzer().analyze(answer: answer, question: "What is the capital of France?", sources: s, embed: embedder.embed)
        XCTAssertEqual(reasons[1], .citation)
        XCTAssertEqual(reasons[2], .wording)  // "is known for its" (4 words in a row)
        XCTAssertEqual(reasons[3], .meaning)  // no 4-word run in common, but the sentence has the source's words
        XCTAssertNil(reasons[4])
        XCTAssertNil(reasons[5])
    }

    func testRestatingTheQuestionIsNotUsingASource() throws {
        let s = try sources(["what is the boiling point of water at sea level"])
        var analyzer = UsageAnalyzer()
        analyzer.similarityThreshold = 1.1  // meaning off: only the wording rule is tested here
        let reasons = try analyzer.analyze(
            answer: "You asked what is the boiling point of water; I do not know.", question: "What is the boiling point of water?", sources: s, embed: nil)
        XCTAssertNil(reasons[1])
    }

    func testAnEmptyAnswerUsesNothing() throws {
        let s = try sources(["anything at all here"])
        XCTAssertTrue(try UsageAnalyzer().analyze(answer: "  \n", question: "q", sources: s, embed: embedder.embed).isEmpty)
    }

    func testSentences() {
        XCTAssertEqual(UsageAnalyzer.sentences("One. Two! Three?\nFour 3.5 five"), ["One.", "Two!", "Three?", "Four 3.5 five"])
    }
}
