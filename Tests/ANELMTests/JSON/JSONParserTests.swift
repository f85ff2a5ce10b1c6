import ANELM
import Foundation
import XCTest

final class JSONParserTests: XCTestCase {
    private func parse(_ text: String, source: String = "test.json") throws -> JSONValue {
        try JSONValue.parse(text, source: source)
    }

    private func parseBytes(_ bytes: [UInt8]) throws -> JSONValue {
        try JSONValue.parse(Data(bytes), source: "test.json")
    }

    /// The error message for text that must be rejected.
    private func rejection(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            let value = try parse(text)
            XCTFail("accepted \(text.debugDescription) as \(value)", file: file, line: line)
            return ""
        } catch {
            return "\(error)"
        }
    }

    func testScalars() throws {
        XCTAssertEqual(try parse("null"), .null)
        XCTAssertEqual(try parse(" true "), .bool(true))
        XCTAssertEqual(try parse("\n\tfalse\r\n"), .bool(false))
        XCTAssertEqual(try parse("\"\""), .string(""))
        XCTAssertEqual(try parse("[]"), .array([]))
        XCTAssertEqual(try parse("{}"), .object(JSONObject()))
        XCTAssertEqual(try parseBytes([0xef, 0xbb, 0xbf] + Array("[1]".utf8)), [1], "a byte-order mark is ignored")
    }

    func testNumbers() throws {
        XCTAssertEqual(try parse("0"), .int(0))
        XCTAssertEqual(try parse("-0"), .int(0), "as Python reads it")
        guard case .double(let negativeZero) = try parse("-0.0") else { return XCTFail("-0.0 is a double") }
        XCTAssertEqual(negativeZero, 0)
        XCTAssertEqual(negativeZero.sign, .minus)
        XCTAssertEqual(try parse("42"), .int(42))
        XCTAssertEqual(try parse("-17"), .int(-17))
        XCTAssertEqual(try parse("3.0"), .double(3))
        XCTAssertEqual(try parse("1e3"), .double(1000))
        XCTAssertEqual(try parse("1E+2"), .double(100))
        XCTAssertEqual(try parse("-2.5e-3"), .double(-0.0025))
        XCTAssertEqual(try parse("0.1"), .double(0.1))
        XCTAssertEqual(try parse("1e-400"), .double(0), "underflow rounds to zero, as strtod does")
        XCTAssertEqual(try parse("9223372036854775807"), .int(Int.max))
        XCTAssertEqual(try parse("-9223372036854775808"), .int(Int.min))
        XCTAssertEqual(try parse("9223372036854775808"), .double(9_223_372_036_854_775_808))
        XCTAssertEqual(try parse("-9223372036854775809"), .double(-0x1p63))
        XCTAssertEqual(try parse("123456789012345678901234567890"), .double(1.2345678901234568e29))
        XCTAssertEqual(try parse("3.0").integerValue, 3)
        XCTAssertNil(try parse("3.5").integerValue)
        XCTAssertEqual(try parse("7").numberValue, 7)
    }

    func testStringsAndEscapes() throws {
        XCTAssertEqual(try parse(#""a\"b\\c\/d\b\f\n\r\t""#), .string("a\"b\\c/d\u{08}\u{0C}\n\r\t"))
        XCTAssertEqual(try parse(#""\u00e9\u00E9\u0000""#), .string("éé\u{0}"))
        XCTAssertEqual(try parse(#""\ud83d\ude00 and \uD834\uDD1E""#), .string("😀 and 𝄞"))
        XCTAssertEqual(try parse("\"▁héllo 世界 😀\""), .string("▁héllo 世界 😀"), "UTF-8 as it is")
        XCTAssertEqual(try parse("\"é\\n😀\""), .string("é\n😀"), "UTF-8 before and after an escape")
    }

    func testStructureAndOrder() throws {
        let value = try parse(#"{"zeta": 1, "alpha": [true, null, {"m": "x", "b": 2.5}], "mid": {}}"#)
        let object = try XCTUnwrap(value.objectValue)
        XCTAssertEqual(object.keys, ["zeta", "alpha", "mid"])
        XCTAssertEqual(value["alpha"]?.arrayValue?[2]["m"], "x")
        XCTAssertEqual(value["alpha"]?.arrayValue?[2].objectValue?.keys, ["m", "b"])
        // Past the linear-lookup size too.
        let keys = (0..<40).map { "k\(($0 * 17) % 40)" }
        let big = try parse("{" + keys.enumerated().map { "\"\($0.element)\": \($0.offset)" }.joined(separator: ",") + "}")
        XCTAssertEqual(big.objectValue?.keys, keys)
        for (i, key) in keys.enumerated() { XCTAssertEqual(big[key], .int(i)) }
        XCTAssertNil(big["nope"])
    }

    func testObjectEditing() {
        var object: JSONObject = ["a": 1, "b": 2]
        for i in 0..<20 { object["k\(i)"] = .int(i) }
        object["a"] = "changed"
        object["b"] = nil
        XCTAssertEqual(object.keys.prefix(3), ["a", "k0", "k1"])
        XCTAssertEqual(object["a"], "changed")
        XCTAssertEqual(object["k19"], 19)
        XCTAssertNil(object["b"])
        XCTAssertEqual(object.count, 21)
        let reordered = JSONObject(object.reversed().map { ($0.0, $0.1) })
        XCTAssertEqual(JSONValue.object(reordered), .object(object), "objects compare by members, not order")
    }

    func testRejectsWhatRFC8259Rejects() {
        let cases = [
            "", "  ", "[1,]", #"{"a":1,}"#, "[,1]", "NaN", "Infinity", "-Infinity", "nan", "01", "-01", "1.", ".5", "+1", "1e",
            "1e+", "--1", "0x10", "[1 2]", "{'a':1}", #"{"a" 1}"#, #"{"a"}"#, "{a:1}", "// c\n1", "/* c */ 1", "1 2", "[] x",
            #""\x""#, #""\u12""#, #""\u12G4""#, #""\ud800""#, #""\udc00""#, #""\ud800\u0041""#, #""\ud800x""#, "\"a\nb\"",
            "\"a\tb\"", "\"abc", "tru", "nul", "falsey", "[", "{", "[1", #"{"a":"#, "1e400", "-1e400", "\u{0}",
        ]
        for text in cases {
            let message = rejection(text)
            XCTAssertTrue(message.hasPrefix("test.json: "), "\(text.debugDescription): \(message)")
        }
    }

    func testRejectsMalformedUTF8() {
        let cases: [[UInt8]] = [
            [0x22, 0xff, 0x22], [0x22, 0xc0, 0xaf, 0x22], [0x22, 0xed, 0xa0, 0x80, 0x22], [0x22, 0xe2, 0x82, 0x22],
            [0x22, 0xf0, 0x9f, 0x98, 0x22], [0x22, 0xf4, 0x90, 0x80, 0x80, 0x22], [0x22, 0x80, 0x22],
            [0x22, 0x5c, 0x6e, 0xff, 0x22],
        ]
        for bytes in cases {
            XCTAssertThrowsError(try parseBytes(bytes), "\(bytes)") { error in
                XCTAssertTrue("\(error)".contains("not valid UTF-8"), "\(error)")
            }
        }
    }

    func testSyntaxErrorsNameOffsetLineAndPlace() {
        XCTAssertEqual(rejection("{\"a\": [1, 2,, 3]}"), "test.json: invalid JSON at byte 12 (line 1) in a[2]: unexpected ',', expected a value")
        XCTAssertEqual(
            rejection("{\n  \"model\": {\n    \"vocab\": {\"x\": 1,}\n  }\n}"),
            "test.json: invalid JSON at byte 36 (line 3) in model.vocab: unexpected '}', expected a key in quotes")
        XCTAssertEqual(rejection("[1, 2"), "test.json: invalid JSON at byte 5 (line 1): unexpected end of text, expected ',' or ']'")
        XCTAssertEqual(rejection("[1] x"), "test.json: invalid JSON at byte 4 (line 1): unexpected 'x' after the value")
        XCTAssertEqual(rejection(""), "test.json: invalid JSON at byte 0 (line 1): the text is empty")
    }

    func testDuplicateKeysAreErrorsNamingKeyAndPath() {
        XCTAssertEqual(
            rejection(#"{"model": {"vocab": {"a": 1, "b": 2, "a": 3}}}"#),
            #"test.json: model.vocab: the key "a" appears twice in one object (JSON readers would disagree on its value)"#)
        let many = (0..<30).map { "\"k\($0)\": \($0)" }.joined(separator: ",")
        XCTAssertTrue(rejection("[{\"x\": 1}, {" + many + ", \"k7\": 0}]").hasPrefix(#"test.json: [1]: the key "k7" appears twice"#))
        XCTAssertTrue(rejection(#"{"a": 1, "a": 1}"#).hasPrefix(#"test.json: the key "a" appears twice"#), "even with equal values")
        XCTAssertEqual(try parse(#"{"a": {"a": 1}, "b": {"a": 2}}"#)["b"]?["a"], 2, "the same key in different objects is fine")
    }

    /// Keys are their exact scalars, as for Python: Gemma's vocabulary has both "য়" (U+09DF) and "য" + U+09BC, which
    /// Swift's String equality calls equal. Small objects (a linear scan) and large ones (a hash) alike.
    func testCanonicallyEquivalentKeysAreDistinct() throws {
        let composed = "\u{09DF}", decomposed = "\u{09AF}\u{09BC}"
        for filler in [0, 20] {
            let others = (0..<filler).map { "\"k\($0)\": 0, " }.joined()
            let object = try XCTUnwrap(try parse("{" + others + "\"\(composed)\": 1, \"\(decomposed)\": 2}").objectValue)
            XCTAssertEqual(object.count, filler + 2)
            XCTAssertEqual(object[composed], 1)
            XCTAssertEqual(object[decomposed], 2)
        }
        XCTAssertTrue(rejection("{\"\(composed)\": 1, \"\(composed)\": 2}").contains("appears twice"))
    }

    func testDepthLimit() throws {
        let deepest = String(repeating: "[", count: 512) + String(repeating: "]", count: 512)
        XCTAssertNoThrow(try parse(deepest))
        let tooDeep = String(repeating: "[", count: 513) + String(repeating: "]", count: 513)
        XCTAssertTrue(rejection(tooDeep).contains("nested deeper than 512 levels"))
        XCTAssertTrue(rejection(String(repeating: "{\"a\":", count: 100_000)).contains("nested deeper than 512 levels"))
    }

    func testWriterIsCompactOrderedAndRoundTrips() throws {
        let value: JSONValue = [
            "name": "tab\there \"quoted\" back\\slash /slash \u{1} é 😀", "ints": [0, -1, .int(Int.max), .int(Int.min)],
            "doubles": [0.5, -0.0, 1e-7, 1e300, 3.0], "flags": [true, false, nil], "nested": ["z": [:], "a": []],
        ]
        let text = value.text
        XCTAssertEqual(
            text,
            #"{"name":"tab\there \"quoted\" back\\slash /slash \u0001 é 😀","ints":[0,-1,9223372036854775807,-9223372036854775808],"doubles":[0.5,-0.0,1e-07,1e+300,3.0],"flags":[true,false,null],"nested":{"z":{},"a":[]}}"#
        )
        let back = try parse(text)
        XCTAssertEqual(back, value)
        XCTAssertEqual(back.text, text)
        XCTAssertEqual(JSONValue.double(.nan).text, "null")
    }

    func testCodable() throws {
        struct Config: Codable, Equatable {
            let name: String
            let extra: JSONValue
        }
        let config = Config(name: "x", extra: ["rope_type": "llama3", "factor": 8.5, "ids": [1, 2], "on": true, "none": nil])
        let data = try JSONEncoder().encode(config)
        XCTAssertEqual(try JSONDecoder().decode(Config.self, from: data), config)
        // Foundation's encoder writes 8.0 as `8`, so through Codable a whole double comes back an int; its
        // number is kept (readers use numberValue).
        let whole = try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(JSONValue.double(8)))
        XCTAssertEqual(whole.numberValue, 8)
        let decoded = try JSONDecoder().decode(JSONValue.self, from: Data(#"{"a": 1, "b": 1.5, "c": [true, "s"]}"#.utf8))
        XCTAssertEqual(decoded, ["a": 1, "b": 1.5, "c": [true, "s"]])
    }

    func testNodeErrorsNamePaths() throws {
        let root = try JSONNode.parseObject(
            Data(#"{"model": {"vocab": {"x y": "1", "ok": 2}, "merges": ["a b", 3]}, "n": 2.5}"#.utf8),
            source: "tokenizer.json")
        let model = try root.object("model")
        XCTAssertEqual(try model.object("vocab").int("ok"), 2)
        func message(_ body: () throws -> Any) -> String {
            do {
                _ = try body()
                return "no error"
            } catch { return "\(error)" }
        }
        XCTAssertEqual(message { try model.object("vocab").int("x y") }, #"tokenizer.json: model.vocab["x y"]: expected an integer, found a string"#)
        XCTAssertEqual(message { try model.array("merges")[1].stringValue() }, "tokenizer.json: model.merges[1]: expected a string, found a number")
        XCTAssertEqual(message { try root.int("n") }, "tokenizer.json: n: expected an integer, found 2.5")
        XCTAssertEqual(message { try root.string("missing") }, "tokenizer.json: missing: expected a string, found null")
        XCTAssertEqual(message { try model.objects("merges") }, "tokenizer.json: model.merges[0]: expected an object, found a string")
        XCTAssertEqual(message { try JSONNode.parseObject(Data("[]".utf8), source: "config.json") }, "config.json: expected an object, found an array")
        XCTAssertTrue(root.isNull("missing"))
        XCTAssertEqual(try root.bool("missing", default: true), true)
        let odd = JSONPath(source: "f.json", components: [.key("a\u{1b}[31m" + String(repeating: "x", count: 200))])
        XCTAssertFalse(odd.description.contains("\u{1b}"), "keys from files are escaped")
        XCTAssertLessThan(odd.description.count, 100, "and cut")
    }

    /// Random mutations of valid documents: every one parses to a value (which then round-trips) or is an error;
    /// nothing traps. Bounded to about three seconds.
    func testFuzzedDocumentsNeverCrash() throws {
        var seeds: [[UInt8]] = [
            #"{"a": [1, -2.5e3, true, false, null, "x\u00e9\ud83d\ude00\n"], "b": {"c": {}, "d": []}}"#,
            #"[0, -0, 1e400, 123456789012345678901, "é", "\\", {"k": "v", "k2": [[[]]]}]"#,
            #"{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}], "max_tokens": 5}"#,
        ].map { Array($0.utf8) }
        let fixture = ModelFixture.directory.appendingPathComponent("tiny-llama/tokenizer.json")
        if let data = try? Data(contentsOf: fixture) { seeds.append(Array(data.prefix(6000))) }
        let interesting = Array("{}[]\",:\\u0123456789eE+-.tfnl \n\t".utf8) + [0x00, 0x1f, 0x7f, 0x80, 0xc0, 0xe2, 0xed, 0xf0, 0xf4, 0xff]
        var random = SeededGenerator(seed: 14)
        var values = 0
        var errors = 0
        let deadline = Date().addingTimeInterval(3)
        while Date() < deadline {
            var bytes = seeds[Int(random.next() % UInt64(seeds.count))]
            for _ in 0...(random.next() % 4) {
                let at = bytes.isEmpty ? 0 : Int(random.next() % UInt64(bytes.count))
                switch random.next() % 6 {
                case 0 where !bytes.isEmpty: bytes[at] = interesting[Int(random.next() % UInt64(interesting.count))]
                case 1: bytes.insert(interesting[Int(random.next() % UInt64(interesting.count))], at: at)
                case 2 where !bytes.isEmpty: bytes.remove(at: at)
                case 3: bytes = Array(bytes.prefix(at))
                case 4 where !bytes.isEmpty:
                    let end = min(bytes.count, at + Int(random.next() % 16))
                    bytes.insert(contentsOf: bytes[at..<end], at: at)
                default: if !bytes.isEmpty { bytes[at] ^= UInt8(1 << (random.next() % 8)) }
                }
            }
            do {
                let value = try parseBytes(bytes)
                XCTAssertEqual(try parse(value.text), value, "round trip of \(String(decoding: bytes, as: UTF8.self).debugDescription)")
                values += 1
            } catch is ANELMError {
                errors += 1
            }
        }
        XCTAssertGreaterThan(values, 100)
        XCTAssertGreaterThan(errors, 1000)
        print("JSON fuzz: \(values + errors) documents, \(values) values, \(errors) errors")
    }
}
