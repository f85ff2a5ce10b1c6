import ANELM
import XCTest

/// GBNF parsing, matching byte strings, token masks against a one-by-one reference, JSON schema compilation.
final class GrammarTests: XCTestCase {
    func assertError(_ gbnf: String, contains fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try Grammar(gbnf: gbnf), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(fragment), "\(error) does not contain \(fragment)", file: file, line: line)
        }
    }

    func testBadGrammarsAreClearErrors() {
        assertError("root = \"a\"", contains: "line 1, column 6: expected '::=' after rule name 'root'")
        assertError("root ::= \"abc", contains: "unterminated string literal")
        assertError("root ::= [a-", contains: "unterminated character class")
        assertError("root ::= b\n\nb ::= \"x\" missing", contains: "line 3, column 11: undefined rule 'missing'")
        assertError("other ::= \"x\"", contains: "no 'root' rule")
        assertError("root ::= \"a\"\nroot ::= \"b\"", contains: "line 2, column 1: rule 'root' is defined twice")
        assertError("root ::= \"\\q\"", contains: "unknown escape '\\q'")
        assertError("root ::= [z-a]", contains: "character range is backwards")
        assertError("root ::= \"a\"{3,1}", contains: "the maximum is below the minimum")
        assertError("root ::= * \"a\"", contains: "nothing before it to repeat")
        assertError("root ::= expr\nexpr ::= expr \"+\" term | term\nterm ::= [0-9]", contains: "left recursion (expr → expr)")
        assertError("root ::= a\na ::= b? \"x\" | \"y\"\nb ::= a \"z\"", contains: "b → a); a repetition")
        assertError("root ::= (\"a\"?)*", contains: "left recursion")
        assertError("root ::= \"a\" )", contains: "unexpected character ')'")
        assertError("root ::= (\"a\"?){0,5000}", contains: "chain of over 1000 rules")
        assertError("root ::= " + String(repeating: "(", count: 200) + "\"a\"" + String(repeating: ")", count: 200), contains: "nested deeper than 100")
    }

    func testMatchesAndRejectsByteStrings() throws {
        let g = try Grammar(
            gbnf: """
                # a comment
                root ::= greeting ( ", " name )? "!"   # trailing comment
                greeting ::= "hello" | "hi"
                name ::= [A-Z] [a-z]{1,5}
                """)
        for ok in ["hello!", "hi, Bob!", "hello, Alexis!"] { XCTAssertTrue(g.matches(ok), ok) }
        for bad in ["hello", "hi, bob!", "hi, Alexandra!", "hey!", "hi, B!", "hi,Bob!", ""] { XCTAssertFalse(g.matches(bad), bad) }
        XCTAssertTrue(g.allowsPrefix("hi, Bo"))
        XCTAssertFalse(g.allowsPrefix("hx"))

        let repeats = try Grammar(gbnf: "root ::= \"a\"{2} \"b\"{1,} \"c\"* \"d\"{0,2} [^x-z\\n]?")
        for ok in ["aab", "aabbbccd", "aabdd", "aabw", "aabé"] { XCTAssertTrue(repeats.matches(ok), ok) }
        for bad in ["ab", "aa", "aabdddd", "aabx", "aab\n", "aabdx"] { XCTAssertFalse(repeats.matches(bad), bad) }

        let unicode = try Grammar(gbnf: "root ::= [α-ω]+ \"→\" [\\u4E00-\\u9FFF] . \"\\U0001F600\"")
        XCTAssertTrue(unicode.matches("αβω→中x😀"))
        XCTAssertTrue(unicode.matches("λ→字é😀"))
        XCTAssertFalse(unicode.matches("a→中x😀"))
        XCTAssertFalse(unicode.matches("λ→a x😀"))
        // Half a character is a prefix, never a match.
        XCTAssertTrue(unicode.allowsPrefix("λ"))

        let nested = try Grammar(gbnf: "root ::= list\nlist ::= \"[\" ( item ( \",\" item )* )? \"]\"\nitem ::= [0-9]+ | list")
        for ok in ["[]", "[1,[2,[]],33]", "[[[[[]]]]]"] { XCTAssertTrue(nested.matches(ok), ok) }
        for bad in ["[1,]", "[[]", "[1 2]"] { XCTAssertFalse(nested.matches(bad), bad) }

        let escapes = try Grammar(gbnf: #"root ::= "\"\\\t\n\x41" [\]\[\-]"#)
        XCTAssertTrue(escapes.matches("\"\\\t\nA]"))
        XCTAssertTrue(escapes.matches("\"\\\t\nA-"))
        XCTAssertFalse(escapes.matches("\"\\\t\nAa"))
    }

    /// A small vocabulary of every short ASCII string over an alphabet, multi-byte characters and lone UTF-8 bytes.
    func smallVocabulary() -> [[UInt8]] {
        let alphabet = Array("ab{}[]\",: 0129-.\\nxé".utf8)
        var tokens: [[UInt8]] = [[]]  // id 0: a special token (no text)
        for a in alphabet { tokens.append([a]) }
        for a in alphabet { for b in alphabet { tokens.append([a, b]) } }
        for word in ["true", "false", "null", "{\"", "\":", "\",\"", "é", "😀", "ab\"}", "  ", "\n  "] { tokens.append(Array(word.utf8)) }
        for byte: UInt8 in [0xC3, 0xA9, 0xF0, 0x9F, 0x98, 0x80] { tokens.append([byte]) }
        return tokens
    }

    func testTrieMaskEqualsTokenByTokenReference() throws {
        let vocabulary = GrammarVocabulary(tokenBytes: smallVocabulary())
        let grammars = [
            Grammar.jsonObject,
            try Grammar(gbnf: "root ::= ( \"a\" | \"é\" | \"😀\" )+ \"b\"?"),
            try Grammar(
                jsonSchema: Data(
                    #"{"type":"object","properties":{"a":{"type":"integer","minimum":-20,"maximum":120},"b":{"type":"array","items":{"type":"string","maxLength":3}}},"required":["a"]}"#
                        .utf8)),
        ]
        var random = SeededGenerator(seed: 5)
        for grammar in grammars {
            // Random walks through allowed tokens; at every state the trie walk equals the reference.
            for _ in 0..<6 {
                let constraint = GrammarConstraint(grammar: grammar, vocabulary: vocabulary, endOfSequenceIds: [0])
                for _ in 0..<25 {
                    let mask = constraint.allowedTokens()
                    XCTAssertEqual(mask, constraint.allowedTokensOneByOne())
                    guard try acceptRandomToken(from: allowedIds(mask, vocabulary.vocabularySize), constraint, &random) else { break }
                }
            }
        }
    }

    func testConstraintRefusesTokensOutsideTheGrammar() throws {
        let vocabulary = GrammarVocabulary(tokenBytes: [[], Array("a".utf8), Array("b".utf8), Array("ab".utf8)])
        let constraint = GrammarConstraint(grammar: try Grammar(gbnf: "root ::= \"ab\""), vocabulary: vocabulary, endOfSequenceIds: [0])
        XCTAssertEqual(constraint.allowedTokens(), [0b1010])
        XCTAssertThrowsError(try constraint.accept(2))
        XCTAssertThrowsError(try constraint.accept(0))  // end of sequence before the end
        try constraint.accept(3)
        XCTAssertTrue(constraint.isComplete)
        XCTAssertFalse(constraint.canContinue)
        XCTAssertEqual(constraint.allowedTokens(), [0b0001])
        var logits: [Float] = [1, 2, 3, 4, 5]
        try constraint.apply(to: &logits)
        XCTAssertEqual(logits, [1, -.infinity, -.infinity, -.infinity, -.infinity])
    }

    func testSamplerNeverDrawsMaskedTokens() {
        var logits = [Float](repeating: 3, count: 100)
        for i in stride(from: 0, to: 100, by: 3) { logits[i] = -.infinity }
        for seed in 0..<50 as Range<UInt64> {
            var sampler = Sampler(SamplingParameters(temperature: 1.5, seed: seed))
            for _ in 0..<20 { XCTAssertNotEqual(sampler.sample(logits) % 3, 0) }
        }
    }

    // MARK: - JSON schema

    func schemaGrammar(_ json: String) throws -> Grammar { try Grammar(jsonSchema: Data(json.utf8)) }

    func testSchemaGrammarsMatchWhatTheSchemaAllows() throws {
        let person = try schemaGrammar(
            #"{"type":"object","properties":{"name":{"type":"string","maxLength":5},"age":{"type":"integer","minimum":0,"maximum":130},"tag":{"enum":["a","b"]}},"required":["name"]}"#
        )
        for ok in [
            #"{"name":"Ada"}"#, #"{"name":"Ada","age":36}"#, #"{ "name": "Ada", "tag": "b" }"#, #"{"name":"","age":130,"tag":"a"}"#, "{\n  \"name\": \"x\"\n}",
        ] {
            XCTAssertTrue(person.matches(ok), ok)
        }
        for bad in [
            #"{"age":3}"#, #"{"name":"Ada","age":131}"#, #"{"name":"Ada","age":-1}"#, #"{"name":"Adalina"}"#, #"{"age":3,"name":"A"}"#, #"{"name":"A","x":1}"#,
            #"{"name":"A",}"#, #"{"name":"A","age":01}"#, #" {"name":"A"}"#,
        ] {
            XCTAssertFalse(person.matches(bad), bad)
        }
        let range = try schemaGrammar(#"{"type":"integer","minimum":-37,"maximum":1234}"#)
        for n in -60...1300 { XCTAssertEqual(range.matches(String(n)), (-37...1234).contains(n), "\(n)") }
        let exclusive = try schemaGrammar(#"{"type":"integer","exclusiveMinimum":-3,"exclusiveMaximum":7}"#)
        for n in -10...10 { XCTAssertEqual(exclusive.matches(String(n)), (-2...6).contains(n), "\(n)") }
        let number = try schemaGrammar(#"{"type":"number","minimum":-2.5,"maximum":3}"#)
        for ok in ["-2", "-1.75", "0", "0.5", "2.999", "3", "-0.25"] { XCTAssertTrue(number.matches(ok), ok) }
        for bad in ["-3", "3.5", "4", "-2.5e1", "1e3", "01"] { XCTAssertFalse(number.matches(bad), bad) }
        let pattern = try schemaGrammar(#"{"type":"string","pattern":"^[A-Z]{2}-\\d{3}(x|yz)?$"}"#)
        for ok in [#""AB-123""#, #""QQ-000yz""#, #""ZZ-999x""#] { XCTAssertTrue(pattern.matches(ok), ok) }
        for bad in [#""ab-123""#, #""AB-12""#, #""AB-123y""#] { XCTAssertFalse(pattern.matches(bad), bad) }
        let quote = try schemaGrammar(#"{"type":"string","pattern":"^a\"b\\\\c[\"x]$"}"#)
        XCTAssertTrue(quote.matches(#""a\"b\\c\"""#))
        XCTAssertTrue(quote.matches(#""a\"b\\cx""#))
        let formats = try schemaGrammar(
            #"{"type":"array","items":{"anyOf":[{"type":"string","format":"date"},{"type":"string","format":"uuid"},{"type":"string","format":"date-time"}]}}"#)
        XCTAssertTrue(formats.matches(#"["2024-02-29","123e4567-e89b-12d3-a456-426614174000","2024-12-31T23:59:59.5+01:00"]"#))
        XCTAssertFalse(formats.matches(#"["2024-13-01"]"#))
        let recursive = try schemaGrammar(
            ##"{"$ref":"#/$defs/node","$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"kids":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["v"]}}}"##
        )
        XCTAssertTrue(recursive.matches(#"{"v":1,"kids":[{"v":2},{"v":3,"kids":[{"v":4,"kids":[]}]}]}"#))
        XCTAssertFalse(recursive.matches(#"{"v":1,"kids":[{"w":2}]}"#))
        let extra = try schemaGrammar(#"{"type":"object","properties":{"id":{"type":"integer"}},"additionalProperties":{"type":"boolean"}}"#)
        XCTAssertTrue(extra.matches(#"{"id":1,"i":true,"idx":false}"#))
        XCTAssertTrue(extra.matches(#"{"other":true}"#))
        XCTAssertFalse(extra.matches(#"{"id":1,"id":true}"#))
        XCTAssertFalse(extra.matches(#"{"id":1,"x":2}"#))
        let items = try schemaGrammar(#"{"type":"array","items":{"type":["integer","null"]},"minItems":2,"maxItems":3}"#)
        for ok in ["[1,null]", "[1, 2, null]"] { XCTAssertTrue(items.matches(ok), ok) }
        for bad in ["[1]", "[1,2,3,4]", "[]", "[true,1]"] { XCTAssertFalse(items.matches(bad), bad) }
    }

    func testParsedSchemaKeepsPropertyOrder() throws {
        // Dictionary literals keep their order, so the members come out z, a, m as written (not sorted).
        let schema: JSONValue = [
            "type": "object",
            "properties": ["z": ["type": "integer"], "a": ["type": "boolean"], "m": ["const": "x"]],
            "required": ["z", "a", "m"],
        ]
        let grammar = try Grammar(jsonSchema: schema)
        XCTAssertTrue(grammar.matches(#"{"z":1,"a":true,"m":"x"}"#))
        XCTAssertFalse(grammar.matches(#"{"a":true,"m":"x","z":1}"#))
        XCTAssertFalse(grammar.matches(#"{"a":true,"z":1,"m":"x"}"#))
        // The same from text: the document's order, and the same language.
        let fromText = try schemaGrammar(
            #"{"type":"object","properties":{"z":{"type":"integer"},"a":{"type":"boolean"},"m":{"const":"x"}},"required":["z","a","m"]}"#)
        XCTAssertTrue(fromText.matches(#"{"z":1,"a":true,"m":"x"}"#))
        XCTAssertFalse(fromText.matches(#"{"a":true,"z":1,"m":"x"}"#))
    }

    func testConstAndEnumLiteralsAreValidJSONEqualToTheSchemaValue() throws {
        // Integers as written; other numbers as JSONValue writes doubles (1e2 is 100.0, 3.0 stays 3.0).
        let numbers = try schemaGrammar(#"{"enum":[1.5,-0.25,2,1e2,3.0,-7]}"#)
        for ok in ["1.5", "-0.25", "2", "100.0", "3.0", "-7"] { XCTAssertTrue(numbers.matches(ok), ok) }
        for bad in ["1e2", "2.0", "3", "0.25", "-7.0"] { XCTAssertFalse(numbers.matches(bad), bad) }
        // With a type, only the values of that type; a whole double is an integer.
        let integers = try schemaGrammar(#"{"type":"integer","enum":[2,2.5,3.0,"4"]}"#)
        for ok in ["2", "3.0"] { XCTAssertTrue(integers.matches(ok), ok) }
        for bad in ["2.5", #""4""#] { XCTAssertFalse(integers.matches(bad), bad) }
        // Strings escaped as JSON; objects compact, members in order.
        let text = try schemaGrammar(#"{"const":"a\"b\\c\n\u0008é"}"#)
        XCTAssertTrue(text.matches(#""a\"b\\c\n\u0008é""#))
        XCTAssertFalse(text.matches(#""a\"b\\c\n\bé""#))
        let object = try schemaGrammar(#"{"const":{"v":2,"tags":["a",null,true],"x":{}}}"#)
        XCTAssertTrue(object.matches(#"{"v":2,"tags":["a",null,true],"x":{}}"#))
        XCTAssertFalse(object.matches(#"{"tags":["a",null,true],"v":2,"x":{}}"#))
        // Lengths written as whole doubles are accepted.
        let items = try schemaGrammar(#"{"type":"array","minItems":2.0,"maxItems":2}"#)
        XCTAssertTrue(items.matches("[1,2]"))
        XCTAssertFalse(items.matches("[1]"))
    }

    func testUnsupportedSchemaKeywordsAreNamed() {
        let cases = [
            (#"{"type":"object","patternProperties":{"^a":{}}}"#, "unsupported keyword 'patternProperties'"),
            (#"{"type":"integer","multipleOf":3}"#, "unsupported keyword 'multipleOf'"),
            (#"{"type":"array","prefixItems":[{}]}"#, "unsupported keyword 'prefixItems'"),
            (#"{"allOf":[{"type":"string"}]}"#, "unsupported keyword 'allOf'"),
            (#"{"type":"object","properties":{"a":{"not":{}}}}"#, "#/properties/a: unsupported keyword 'not'"),
            (#"{"type":"string","format":"email"}"#, "unsupported format 'email'"),
            (#"{"$ref":"http://example.com/s.json"}"#, "only local references"),
            (##"{"$ref":"#/$defs/missing"}"##, "points nowhere"),
            (#"{"type":"string","pattern":"a(?=b)"}"#, "only (?: ) groups"),
            (#"{"type":"string","pattern":"a\\bc"}"#, "unsupported escape '\\b'"),
            (#"{"type":"integer","minimum":5,"maximum":4}"#, "no integer lies within the bounds"),
            (#"{"type":"whatever"}"#, "unknown type 'whatever'"),
            (#"{"type":"object""#, "JSON schema: invalid JSON at byte 16 (line 1): unexpected end of text"),
            (#"{"type":"object","properties":{"a":{"type":}}}"#, "JSON schema: invalid JSON at byte 43 (line 1) in properties.a.type"),
            (#"{"type":"string","type":"integer"}"#, "the key \"type\" appears twice"),
            (#"{"type":"array","minItems":1.5}"#, "#: 'minItems' must be an integer in 0…10000"),
        ]
        for (schema, fragment) in cases {
            XCTAssertThrowsError(try Grammar(jsonSchema: Data(schema.utf8)), schema) { error in
                XCTAssertTrue("\(error)".contains(fragment), "\(error) does not contain \(fragment)")
            }
        }
        // A schema already parsed: errors name the keyword and its path the same way.
        let parsed: JSONValue = ["type": "array", "items": ["type": "object", "properties": ["a": ["uniqueItems": true]]]]
        XCTAssertThrowsError(try Grammar(jsonSchema: parsed)) { error in
            XCTAssertTrue("\(error)".contains("#/items/properties/a: unsupported keyword 'uniqueItems'"), "\(error)")
        }
        // Annotations are fine.
        XCTAssertNoThrow(
            try Grammar(
                jsonSchema: Data(
                    #"{"$schema":"https://json-schema.org/draft/2020-12/schema","$id":"x","title":"T","description":"D","examples":[1],"default":1,"type":"integer"}"#
                        .utf8)))
    }
}

/// The token ids a mask allows.
func allowedIds(_ mask: [UInt64], _ vocabularySize: Int) -> [Int] {
    (0..<vocabularySize).filter { mask[$0 >> 6] >> UInt64($0 & 63) & 1 == 1 }
}

/// One step of a random walk through a grammar: accepts one of `allowed` (end of sequence, id 0, only where the grammar
/// is complete). False when the walk is over.
func acceptRandomToken(from allowed: [Int], _ constraint: GrammarConstraint, _ random: inout SeededGenerator) throws -> Bool {
    guard !allowed.isEmpty else { return false }
    let token = allowed[Int(random.next() % UInt64(allowed.count))]
    if token == 0 {
        XCTAssertTrue(constraint.isComplete)
        return false
    }
    try constraint.accept(token)
    return true
}
