import ANELM
import Foundation
import XCTest

/// Constrained generation with the real default model: masks equal the reference on its vocabulary, and every
/// output of a corpus of schemas and of random schemas parses and validates.
final class SchemaGenerationTests: XCTestCase {
    static let model: LoadedModel? = defaultModelPath().flatMap { try? ModelLoader.load($0) }

    func loaded() throws -> LoadedModel {
        guard defaultModelPath() != nil else { throw XCTSkip("default model not installed (scripts/test installs it)") }
        return try XCTUnwrap(Self.model, "default model did not load")
    }

    func generate(_ schema: String, task: String, sampling: SamplingParameters, maxTokens: Int = 400) throws -> GenerationResult {
        let model = try loaded()
        let prompt = try model.chatPromptTokens([ChatMessage(role: "user", content: "Reply with JSON only. \(task)")])
        let parameters = GenerationParameters(maxTokens: maxTokens, sampling: sampling, grammar: try Grammar(jsonSchema: Data(schema.utf8)))
        return try model.makeSession().generate(prompt: prompt, parameters: parameters)
    }

    func assertValid(_ result: GenerationResult, _ schema: String, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(result.finishReason, .stop, "\(label): did not finish: \(result.text)", file: file, line: line)
        do {
            let value = try JSONDecoder().decode(TestJSON.self, from: Data(result.text.utf8))
            let schemaValue = try JSONDecoder().decode(TestJSON.self, from: Data(schema.utf8))
            let problems = SchemaValidator(root: schemaValue).problems(value, schemaValue, at: "$")
            XCTAssertEqual(problems, [], "\(label): \(result.text)", file: file, line: line)
        } catch {
            XCTFail("\(label): not JSON (\(error)): \(result.text)", file: file, line: line)
        }
    }

    func testMaskEqualsReferenceOnTheDefaultVocabulary() throws {
        let model = try loaded()
        let vocabulary = GrammarVocabulary.for(model.tokenizer)
        let grammar = try Grammar(jsonSchema: Data(Self.corpus[0].schema.utf8))
        let constraint = GrammarConstraint(grammar: grammar, vocabulary: vocabulary, endOfSequenceIds: model.endOfSequenceIds)
        // States along a valid output: start, inside a key, inside a string value, inside a number, after a value.
        let text = #"{"name": "Ada Lovelace", "age": 36, "email": "ada@example.com"}"#
        var checked = 0
        for (i, token) in model.tokenizer.encode(text, addSpecialTokens: false).enumerated() {
            if i % 3 == 0 {
                let mask = constraint.allowedTokens()
                XCTAssertEqual(mask, constraint.allowedTokensOneByOne(), "state after \(i) tokens")
                XCTAssertGreaterThan(mask.reduce(0) { $0 + $1.nonzeroBitCount }, 0)
                checked += 1
            }
            try constraint.accept(token)
        }
        XCTAssertTrue(constraint.isComplete)
        XCTAssertGreaterThanOrEqual(checked, 5)
        // Special tokens are never allowed, end-of-sequence only at the end.
        let mask = constraint.allowedTokens()
        for id in model.endOfSequenceIds { XCTAssertEqual(mask[id >> 6] >> UInt64(id & 63) & 1, 1) }
        for id in 0..<model.tokenizer.vocabSize where model.tokenizer.isSpecialToken(id) && !model.endOfSequenceIds.contains(id) {
            XCTAssertEqual(mask[id >> 6] >> UInt64(id & 63) & 1, 0)
        }
    }

    static let corpus: [(schema: String, task: String)] = [
        (
            #"{"type":"object","properties":{"name":{"type":"string","maxLength":40},"age":{"type":"integer","minimum":0,"maximum":150},"email":{"type":"string","maxLength":60}},"required":["name","age"]}"#,
            "A person: Ada Lovelace, 36."
        ),
        (#"{"type":"object","properties":{"ok":{"type":"boolean"},"note":{"type":"null"}},"required":["ok","note"]}"#, "Is water wet?"),
        (#"{"type":"string","enum":["red","green","blue"]}"#, "The color of the sky."),
        (#"{"type":"array","items":{"type":"string","maxLength":20},"minItems":1,"maxItems":3}"#, "Three fruits."),
        (
            #"{"type":"object","properties":{"city":{"type":"string","maxLength":30},"address":{"type":"object","properties":{"street":{"type":"string","maxLength":30},"zip":{"type":"string","pattern":"^[0-9]{5}$"}},"required":["street","zip"]}},"required":["city","address"]}"#,
            "An address in Paris."
        ),
        (#"{"type":"integer","minimum":1,"maximum":100}"#, "A number between 1 and 100."),
        (#"{"type":"number","minimum":-5.5,"maximum":10}"#, "A temperature."),
        (#"{"type":"string","pattern":"^[A-Z]{3}-[0-9]{2,4}$"}"#, "A product code."),
        (
            #"{"type":"object","properties":{"born":{"type":"string","format":"date"},"seen":{"type":"string","format":"date-time"}},"required":["born","seen"]}"#,
            "When was Ada born?"
        ),
        (
            #"{"type":"object","properties":{"id":{"type":"string","format":"uuid"},"at":{"type":"string","format":"time"}},"required":["id","at"]}"#,
            "An id and a time."
        ),
        (#"{"anyOf":[{"type":"string","maxLength":20},{"type":"integer"}]}"#, "How many legs does a cat have?"),
        (
            #"{"oneOf":[{"type":"object","properties":{"kind":{"const":"circle"},"r":{"type":"number","minimum":0,"maximum":100}},"required":["kind","r"]},{"type":"object","properties":{"kind":{"const":"square"},"side":{"type":"integer","minimum":1,"maximum":10}},"required":["kind","side"]}]}"#,
            "A shape."
        ),
        (
            ##"{"$ref":"#/$defs/person","$defs":{"person":{"type":"object","properties":{"name":{"type":"string","maxLength":20},"friends":{"type":"array","items":{"$ref":"#/$defs/person"},"maxItems":2}},"required":["name","friends"]}}}"##,
            "Ada has one friend, Bob. Bob has no friends (an empty list)."
        ),
        (
            #"{"type":"object","properties":{"title":{"type":"string","maxLength":30}},"required":["title"],"additionalProperties":{"type":"integer","minimum":0,"maximum":9}}"#,
            "A book and some ratings."
        ),
        (#"{"type":["string","null"],"maxLength":10}"#, "A nickname, or null."),
        (#"{"type":"string","minLength":3,"maxLength":8}"#, "A short word."),
        (
            #"{"type":"array","items":{"type":"object","properties":{"sku":{"type":"string","pattern":"^[a-z]{2}[0-9]{3}$"},"qty":{"type":"integer","minimum":1,"maximum":5}},"required":["sku","qty"],"additionalProperties":false},"maxItems":3}"#,
            "An order of two items."
        ),
        (#"{"const":{"version":2,"tags":["a","b"]}}"#, "Anything."),
        (#"{"enum":[1,"two",null,true,{"x":[3]}]}"#, "Pick one."),
        (#"{"type":"integer","exclusiveMinimum":0,"exclusiveMaximum":1000}"#, "Population of a village, in hundreds."),
        (
            #"{"type":"object","properties":{"a":{"type":"boolean"},"b":{"type":"integer","maximum":-10},"c":{"type":"string","maxLength":5}}}"#,
            "Some optional fields."
        ),
        (
            ##"{"definitions":{"pt":{"type":"array","items":{"type":"number","minimum":-1000,"maximum":1000},"minItems":2,"maxItems":2}},"type":"object","properties":{"from":{"$ref":"#/definitions/pt"},"to":{"$ref":"#/definitions/pt"}},"required":["from","to"]}"##,
            "A line segment."
        ),
        (#"{"type":"string","pattern":"^(cat|dog)s?( and (cat|dog)s?)?$"}"#, "Pets."),
        (
            ##"{"type":"object","properties":{"value":{"type":"string","maxLength":12},"next":{"anyOf":[{"type":"null"},{"$ref":"#"}]}},"required":["value","next"]}"##,
            "A linked list of two values, a then b; the last next is null."
        ),
        (
            #"{"type":"array","items":{"type":"array","items":{"type":"integer","minimum":0,"maximum":9},"maxItems":3},"minItems":1,"maxItems":3}"#,
            "A 2 by 2 grid of digits."
        ),
    ]

    func testCorpusOfSchemasAlwaysValidates() throws {
        _ = try loaded()
        XCTAssertGreaterThanOrEqual(Self.corpus.count, 20)
        for (i, entry) in Self.corpus.enumerated() {
            assertValid(try generate(entry.schema, task: entry.task, sampling: SamplingParameters()), entry.schema, "schema \(i) greedy")
            // Recursive schemas (12, 23) sampled cooler: hot, the model nests forever and runs out of tokens.
            let temperature: Float = [12, 23].contains(i) ? 0.7 : [0.7, 1.0, 1.5][i % 3]
            let sampling = SamplingParameters(temperature: temperature, seed: UInt64(100 + i))
            assertValid(try generate(entry.schema, task: entry.task, sampling: sampling), entry.schema, "schema \(i) T=\(temperature) seed \(100 + i)")
        }
    }

    /// Random schemas (bounded so that every output ends within the token budget) × seeds × temperatures up to 1.5.
    func testFuzzRandomSchemasAlwaysValidate() throws {
        _ = try loaded()
        var random = SeededGenerator(seed: 2026)
        let start = Date()
        var cases = 0
        while Date().timeIntervalSince(start) < 45 {
            var maker = RandomSchema(random: &random)
            let schema = maker.schema(depth: 0).text
            let temperature = Float(random.next() % 16) / 10
            let seed = random.next()
            let result = try generate(schema, task: "Fill in the data.", sampling: SamplingParameters(temperature: temperature, seed: seed), maxTokens: 600)
            assertValid(result, schema, "fuzz case \(cases) T=\(temperature) seed \(seed)")
            cases += 1
        }
        print("fuzz: \(cases) random schemas generated and validated")
        XCTAssertGreaterThanOrEqual(cases, 5)
    }
}

// MARK: - Random schemas

/// A schema as a tree, printed as JSON.
indirect enum SchemaNode {
    case leaf(String)
    case object([(String, SchemaNode)])

    var text: String {
        switch self {
        case .leaf(let json): return json
        case .object(let members): return "{" + members.map { "\"\($0.0)\":\($0.1.text)" }.joined(separator: ",") + "}"
        }
    }
}

struct RandomSchema {
    var random: SeededGenerator
    init(random: inout SeededGenerator) { self.random = SeededGenerator(seed: random.next()) }

    mutating func pick(_ n: Int) -> Int { Int(random.next() % UInt64(n)) }

    mutating func schema(depth: Int) -> SchemaNode {
        let kinds = depth >= 2 ? 7 : 10
        switch pick(kinds) {
        case 0: return .leaf(#"{"type":"string","maxLength":\#(pick(12) + 1)}"#)
        case 1:
            let low = pick(200) - 100
            return .leaf(#"{"type":"integer","minimum":\#(low),"maximum":\#(low + pick(500))}"#)
        case 2: return .leaf(#"{"type":"number","minimum":\#(pick(50) - 25),"maximum":\#(pick(50) + 26)}"#)
        case 3: return .leaf(["{\"type\":\"boolean\"}", "{\"type\":\"null\"}", "{\"const\":\"fixed\"}"][pick(3)])
        case 4: return .leaf(#"{"enum":["alpha","beta",7,false,null]}"#)
        case 5:
            return .leaf(
                [
                    "{\"type\":\"string\",\"format\":\"date\"}", "{\"type\":\"string\",\"format\":\"uuid\"}", "{\"type\":\"string\",\"format\":\"date-time\"}",
                    "{\"type\":\"string\",\"pattern\":\"^[a-f0-9]{4}(-[A-Z]{1,6})?$\"}",
                ][pick(4)])
        case 6: return .leaf(#"{"type":["integer","null"],"maximum":50}"#)
        case 7:
            let minItems = pick(2)
            return .object([
                ("type", .leaf("\"array\"")), ("items", schema(depth: depth + 1)), ("minItems", .leaf("\(minItems)")),
                ("maxItems", .leaf("\(minItems + pick(3))")),
            ])
        case 8:
            let count = pick(4) + 1
            var properties: [(String, SchemaNode)] = []
            var required: [String] = []
            for i in 0..<count {
                let name = ["id", "name", "value", "items", "x y", "ünï"][pick(6)] + "\(i)"
                properties.append((name, schema(depth: depth + 1)))
                if pick(2) == 0 { required.append("\"\(name)\"") }
            }
            return .object([
                ("type", .leaf("\"object\"")), ("properties", .object(properties)), ("required", .leaf("[" + required.joined(separator: ",") + "]")),
                ("additionalProperties", .leaf("false")),
            ])
        default:
            return .object([("anyOf", .leaf("[" + schema(depth: depth + 1).text + "," + #"{"type":"boolean"}"# + "]"))])
        }
    }
}

// MARK: - A validator for the supported keywords

enum TestJSON: Decodable, Equatable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([TestJSON])
    case object([String: TestJSON])

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? c.decode(Int.self) {
            self = .int(i)
        } else if let d = try? c.decode(Double.self) {
            self = .double(d)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a = try? c.decode([TestJSON].self) {
            self = .array(a)
        } else {
            self = .object(try c.decode([String: TestJSON].self))
        }
    }

    var number: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    /// JSON equality: 1 == 1.0.
    func same(_ other: TestJSON) -> Bool {
        if let a = number, let b = other.number { return a == b }
        switch (self, other) {
        case (.array(let x), .array(let y)): return x.count == y.count && zip(x, y).allSatisfy { $0.same($1) }
        case (.object(let x), .object(let y)): return x.count == y.count && x.allSatisfy { key, value in y[key].map(value.same) ?? false }
        default: return self == other
        }
    }
}

struct SchemaValidator {
    let root: TestJSON

    func problems(_ value: TestJSON, _ schema: TestJSON, at path: String) -> [String] {
        guard case .object(let s) = schema else { return schema == .bool(false) ? ["\(path): schema false"] : [] }
        var out: [String] = []
        if case .string(let ref)? = s["$ref"] {
            var node = root
            for part in ref.dropFirst(2).split(separator: "/") where ref != "#" {
                guard case .object(let members) = node, let next = members[String(part)] else { return ["\(path): bad ref \(ref)"] }
                node = next
            }
            out += problems(value, node, at: path)
        }
        if let c = s["const"], !value.same(c) { out.append("\(path): not the const") }
        if case .array(let options)? = s["enum"], !options.contains(where: value.same) { out.append("\(path): not in enum") }
        if case .array(let branches)? = s["anyOf"], !branches.contains(where: { problems(value, $0, at: path).isEmpty }) {
            out.append("\(path): no anyOf branch")
        }
        if case .array(let branches)? = s["oneOf"], branches.filter({ problems(value, $0, at: path).isEmpty }).count != 1 {
            out.append("\(path): not exactly one oneOf branch")
        }
        if let type = s["type"] {
            var types: [String] = []
            if case .string(let t) = type { types = [t] }
            if case .array(let list) = type { types = list.compactMap { if case .string(let t) = $0 { return t } else { return nil } } }
            if !types.contains(where: { self.is(value, $0) }) { out.append("\(path): not of type \(types)") }
        }
        func bound(_ key: String) -> Double? { s[key]?.number }
        if let x = value.number {
            if let b = bound("minimum"), x < b { out.append("\(path): below minimum") }
            if let b = bound("maximum"), x > b { out.append("\(path): above maximum") }
            if let b = bound("exclusiveMinimum"), x <= b { out.append("\(path): not above exclusiveMinimum") }
            if let b = bound("exclusiveMaximum"), x >= b { out.append("\(path): not below exclusiveMaximum") }
        }
        if case .string(let text) = value {
            let length = text.unicodeScalars.count
            if let b = bound("minLength"), Double(length) < b { out.append("\(path): shorter than minLength") }
            if let b = bound("maxLength"), Double(length) > b { out.append("\(path): longer than maxLength") }
            if case .string(let pattern)? = s["pattern"], !matches(pattern, text) { out.append("\(path): does not match \(pattern)") }
            if case .string(let format)? = s["format"] {
                let time = "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
                let date = "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
                let patterns = [
                    "date": "^\(date)$", "time": "^\(time)$", "date-time": "^\(date)T\(time)$",
                    "uuid": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
                ]
                if let p = patterns[format], !matches(p, text) { out.append("\(path): not a \(format)") }
            }
        }
        if case .array(let items) = value {
            if let b = bound("minItems"), Double(items.count) < b { out.append("\(path): fewer than minItems") }
            if let b = bound("maxItems"), Double(items.count) > b { out.append("\(path): more than maxItems") }
            if let itemSchema = s["items"] { for (i, item) in items.enumerated() { out += problems(item, itemSchema, at: "\(path)[\(i)]") } }
        }
        if case .object(let members) = value {
            var declared: [String: TestJSON] = [:]
            if case .object(let properties)? = s["properties"] { declared = properties }
            if case .array(let required)? = s["required"] {
                for case .string(let key) in required where members[key] == nil { out.append("\(path): missing \(key)") }
            }
            for (key, member) in members {
                if let propertySchema = declared[key] {
                    out += problems(member, propertySchema, at: "\(path).\(key)")
                } else if let extra = s["additionalProperties"] {
                    out += problems(member, extra, at: "\(path).\(key)")
                }
            }
        }
        return out
    }

    func `is`(_ value: TestJSON, _ type: String) -> Bool {
        switch (value, type) {
        case (.null, "null"), (.bool, "boolean"), (.string, "string"), (.array, "array"), (.object, "object"), (.int, "integer"), (.int, "number"),
            (.double, "number"):
            return true
        case (.double(let d), "integer"): return d == d.rounded()
        default: return false
        }
    }

    func matches(_ pattern: String, _ text: String) -> Bool {
        guard let regex = try? NSRegularExpression(pattern: pattern) else { return false }
        return regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
    }
}
