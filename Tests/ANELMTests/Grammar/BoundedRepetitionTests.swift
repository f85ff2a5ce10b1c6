import ANELM
import Foundation
import XCTest

/// Bounded repetitions (`x{m,n}`, JSON `maxLength`/`maxItems`) share token masks between positions far from their
/// bound. These check, on random grammars and random walks, that the masks still equal the one-by-one reference at
/// awkward bounds: 0, 1, around each trie's longest token (4, 8, 16, …) and large; and that the language is unchanged.
final class BoundedRepetitionTests: XCTestCase {
    /// Bounds around the token-length classes' limits (tokens of 1–4, 5–8, 9–16, 17–32 bytes) and beyond.
    static let bounds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 16, 17, 18, 24, 31, 32, 33, 34, 40, 100]

    /// Single bytes, pairs, runs of one character of every length to 36, and random strings up to 30 characters
    /// (some of two bytes), so every length class holds tokens that fit inside and across a repetition.
    func vocabulary(seed: UInt64) -> (GrammarVocabulary, [[UInt8]]) {
        var random = SeededGenerator(seed: seed)
        let characters = ["a", "b", "é", "\"", ",", "x"]
        var tokens: [[UInt8]] = [[]]  // id 0: end of sequence
        var seen = Set<[UInt8]>()
        func add(_ bytes: [UInt8]) { if seen.insert(bytes).inserted { tokens.append(bytes) } }
        for c in characters { add(Array(c.utf8)) }
        for byte: UInt8 in [0xC3, 0xA9] { add([byte]) }
        for a in characters { for b in characters { add(Array((a + b).utf8)) } }
        for c in ["a", "b", "é", "ab"] { for n in 1...36 { add(Array(String(repeating: c, count: n).utf8)) } }
        for _ in 0..<500 {
            let length = 1 + Int(random.next() % 30)
            add(Array((0..<length).map { _ in characters[Int(random.next() % UInt64(characters.count))] }.joined().utf8))
        }
        return (GrammarVocabulary(tokenBytes: tokens), tokens)
    }

    /// Grammars with one or two bounded repetitions: of a byte class, of alternatives of different lengths, of an item
    /// that can be empty, nested, unbounded with a minimum, exact counts, and a JSON schema.
    func grammar(_ template: Int, _ m: Int, _ n: Int) throws -> Grammar {
        switch template {
        case 0: return try Grammar(gbnf: "root ::= \"\\\"\" [ab]{\(m),\(n)} \"\\\"\" \"x\"?")
        case 1: return try Grammar(gbnf: "root ::= ( \"a\" | \"é\" | \"ab\" ){\(m),\(n)} \"\\\"\"")
        case 2: return try Grammar(gbnf: "root ::= ( \"a\"? \"b\"? ){\(m),\(n)} \"x\"")
        case 3: return try Grammar(gbnf: "root ::= ( \"\\\"\" [ab]{\(m),\(n)} \"\\\"\" ){\(min(m, 3)),\(min(n, 5))} \",\"")
        case 4: return try Grammar(gbnf: "root ::= \"a\"{\(m),} [bé]{\(m)} \"x\"")
        default:
            let schema = #"{"type":"array","items":{"type":"string","minLength":\#(m),"maxLength":\#(n)},"minItems":\#(min(m, 2)),"maxItems":\#(min(n, 3) + 1)}"#
            return try Grammar(jsonSchema: Data(schema.utf8))
        }
    }

    func testMasksEqualTheReferenceAtAwkwardBounds() throws {
        var random = SeededGenerator(seed: 16)
        let (vocabulary, tokens) = vocabulary(seed: 7)
        var checked = 0
        for template in 0..<6 {
            for _ in 0..<7 {
                var m = Self.bounds[Int(random.next() % UInt64(Self.bounds.count))]
                var n = Self.bounds[Int(random.next() % UInt64(Self.bounds.count))]
                if m > n { swap(&m, &n) }
                let grammar = try grammar(template, m, n)
                for _ in 0..<4 {
                    let constraint = GrammarConstraint(grammar: grammar, vocabulary: vocabulary, endOfSequenceIds: [0])
                    for step in 0..<40 {
                        let mask = constraint.allowedTokens()
                        XCTAssertEqual(mask, constraint.allowedTokensOneByOne(), "template \(template) {\(m),\(n)} step \(step)")
                        checked += 1
                        var allowed = allowedIds(mask, vocabulary.vocabularySize)
                        // Mostly short tokens, so walks reach positions near the bounds.
                        if random.next() % 2 == 0 {
                            let short = allowed.filter { $0 != 0 && tokens[$0].count <= 2 }
                            if !short.isEmpty { allowed = short }
                        }
                        guard try acceptRandomToken(from: allowed, constraint, &random) else { break }
                    }
                }
            }
        }
        XCTAssertGreaterThan(checked, 1000)
    }

    /// The grammar still matches exactly what the repetition says, compared with a regular expression on random strings.
    func testLanguageOfBoundedRepetitionsIsUnchanged() throws {
        var random = SeededGenerator(seed: 3)
        let letters: [Character] = ["a", "b", "\"", "x"]
        for _ in 0..<40 {
            var m = Self.bounds[Int(random.next() % UInt64(Self.bounds.count))]
            var n = Self.bounds[Int(random.next() % UInt64(Self.bounds.count))]
            if m > n { swap(&m, &n) }
            let grammar = try grammar(0, m, n)
            let regex = try NSRegularExpression(pattern: "^\"[ab]{\(m),\(n)}\"x?$")
            for _ in 0..<50 {
                // Mostly of the right shape, so that lengths around the bounds are tried.
                let length = Int(random.next() % UInt64(n + 3))
                var text = String((0..<length).map { _ in random.next() % 20 == 0 ? letters[Int(random.next() % 4)] : letters[Int(random.next() % 2)] })
                if random.next() % 4 != 0 { text = "\"" + text + "\"" }
                if random.next() % 3 == 0 { text += "x" }
                let expected = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
                XCTAssertEqual(grammar.matches(text), expected, "{\(m),\(n)}: \(text)")
            }
        }
        let unbounded = try Grammar(gbnf: "root ::= \"a\"{3,} \"b\"")
        for (text, ok) in [("aab", false), ("aaab", true), ("aaaaaaaab", true), ("aaa", false)] { XCTAssertEqual(unbounded.matches(text), ok, text) }
    }

    /// On Gemma 3's 262k-token vocabulary (tokens up to 48 bytes): the masks inside `order.schema.json`'s bounded
    /// strings (`maxLength` 40 and 60), from far from the bound to at it, equal the reference.
    func testGemmaMasksInsideBoundedStringsEqualTheReference() throws {
        guard let path = gemmaModelPath() else { throw XCTSkip("Gemma 3 270M not installed (scripts/fetch-gemma3)") }
        let model = try ModelLoader.load(path)
        let vocabulary = GrammarVocabulary.for(model.tokenizer)
        let schema = try String(contentsOfFile: #filePath.replacingOccurrences(of: "Tests/ANELMTests/Grammar/BoundedRepetitionTests.swift", with: "bench/grammar/order.schema.json"), encoding: .utf8)
        let constraint = GrammarConstraint(grammar: try Grammar(jsonSchema: Data(schema.utf8)), vocabulary: vocabulary, endOfSequenceIds: model.endOfSequenceIds)
        let customer = "Ada Lovelace and Charles Babbage, London"  // 40 characters: up to the bound
        let note = "Deliver before noon, ring twice; fragile parts inside the box"  // 61: one too many
        let text = #"{"customer":"\#(customer)","email":"ada@example.com","items":[{"sku":"ABC-1234","qty":2,"price":9.5}],"paid":true,"date":"2024-05-01","note":"\#(note.prefix(60))"}"#
        var checked = 0
        for (i, token) in model.tokenizer.encode(text, addSpecialTokens: false).enumerated() {
            if i < 14 || (i >= 40 && i % 2 == 0) {
                XCTAssertEqual(constraint.allowedTokens(), constraint.allowedTokensOneByOne(), "state after \(i) tokens")
                checked += 1
            }
            try constraint.accept(token)
        }
        XCTAssertTrue(constraint.isComplete)
        XCTAssertGreaterThan(checked, 14)
    }
}
