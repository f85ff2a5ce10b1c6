/// A set of bytes, as a 256-bit mask.
struct ByteSet: Hashable, Sendable {
    var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    static func == (a: ByteSet, b: ByteSet) -> Bool { a.words == b.words }
    func hash(into hasher: inout Hasher) {
        hasher.combine(words.0)
        hasher.combine(words.1)
        hasher.combine(words.2)
        hasher.combine(words.3)
    }

    init() {}
    init(_ range: ClosedRange<UInt8>) { for b in range { insert(b) } }

    @inline(__always) func contains(_ byte: UInt8) -> Bool {
        let bit = UInt64(1) << UInt64(byte & 63)
        switch byte >> 6 {
        case 0: return words.0 & bit != 0
        case 1: return words.1 & bit != 0
        case 2: return words.2 & bit != 0
        default: return words.3 & bit != 0
        }
    }

    mutating func insert(_ byte: UInt8) {
        let bit = UInt64(1) << UInt64(byte & 63)
        switch byte >> 6 {
        case 0: words.0 |= bit
        case 1: words.1 |= bit
        case 2: words.2 |= bit
        default: words.3 |= bit
        }
    }

    mutating func formUnion(_ other: ByteSet) {
        words.0 |= other.words.0
        words.1 |= other.words.1
        words.2 |= other.words.2
        words.3 |= other.words.3
    }
}

/// One step of a compiled rule alternative.
enum GrammarElement: Equatable, Sendable {
    /// One byte from the set (index into `Grammar.byteSets`).
    case bytes(Int32)
    case rule(Int32)
    /// The end of an alternative.
    case end
}

/// A context-free grammar over UTF-8 bytes: made from GBNF text (llama.cpp's syntax) or a JSON schema,
/// and used to constrain generation (`GenerationParameters.grammar`) so that the output always matches it.
///
/// Characters are compiled to their UTF-8 byte sequences, so matching works byte by byte and the output is
/// always valid UTF-8. Left recursion is refused (the matcher expands rules top-down).
public struct Grammar: Sendable {
    /// All alternatives, one after another, each closed by `.end`.
    let elements: [GrammarElement]
    /// For each rule, the positions in `elements` where its alternatives start.
    let alternatives: [[Int32]]
    let ruleNames: [String]
    let byteSets: [ByteSet]
    let root: Int32
    /// Bounded repetitions as chains of equal blocks: per chain, where the block with r blocks left (itself
    /// included) starts (`repetitionStarts[c][r]`; index 0 unused). Per element position: its chain (-1: none)
    /// and how many blocks are left there. A token of at most U bytes cannot tell r > U from r = U + 1 blocks
    /// left, which is what lets masks be shared (`canonicalPosition`).
    let repetitionStarts: [[Int32]]
    let repetitionChain: [Int32]
    let repetitionLeft: [Int32]
    /// The GBNF text this grammar was made from.
    public let source: String

    /// Parses GBNF; the start rule is `root`. Bad syntax, undefined rules and left recursion are errors
    /// naming the line and column (or the rules involved).
    public init(gbnf: String) throws {
        let definitions = try GBNFParser.parse(gbnf)
        var compiler = try GrammarCompiler(definitions)
        try compiler.compile()
        elements = compiler.elements
        alternatives = compiler.alternatives
        ruleNames = compiler.names
        byteSets = compiler.byteSets
        root = compiler.rootId
        repetitionStarts = compiler.repetitionStarts
        repetitionChain = compiler.repetitionChain
        repetitionLeft = compiler.repetitionLeft
        source = gbnf
        try refuseLeftRecursion()
    }

    /// `position` moved, inside a bounded repetition with more than `limit` blocks left, to the same place in the
    /// block with `limit` left (≥ 2). The stack after it is the same, so for any byte string shorter than `limit`,
    /// whether it can be consumed is the same: it can finish fewer than `limit` nonempty blocks, and blocks that
    /// match the empty text can be skipped in either chain.
    @inline(__always) func canonicalPosition(_ position: Int32, limit: Int32) -> Int32 {
        let chain = repetitionChain[Int(position)]
        if chain < 0 { return position }
        let left = repetitionLeft[Int(position)]
        if left <= limit { return position }
        let starts = repetitionStarts[Int(chain)]
        return starts[Int(limit)] + (position - starts[Int(left)])
    }

    /// Whether all of `text` matches the grammar.
    public func matches(_ text: String) -> Bool {
        GrammarMatcher(self).matchState(Array(text.utf8)).contains(GrammarMatcher.complete)
    }

    /// Whether `text` can be continued into a match (or is one).
    public func allowsPrefix(_ text: String) -> Bool {
        !GrammarMatcher(self).matchState(Array(text.utf8)).isEmpty
    }

    /// Rules that can match the empty text, and rules that reach themselves before consuming a byte.
    private func refuseLeftRecursion() throws {
        var nullable = [Bool](repeating: false, count: alternatives.count)
        var changed = true
        while changed {
            changed = false
            for rule in alternatives.indices where !nullable[rule] {
                for start in alternatives[rule] where isNullable(from: Int(start), nullable) {
                    nullable[rule] = true
                    changed = true
                    break
                }
            }
        }
        // Edges: rule → rules it can call before consuming anything.
        var leftCalls = [[Int]](repeating: [], count: alternatives.count)
        for rule in alternatives.indices {
            for start in alternatives[rule] {
                var position = Int(start)
                loop: while true {
                    switch elements[position] {
                    case .end, .bytes: break loop
                    case .rule(let callee):
                        leftCalls[rule].append(Int(callee))
                        if !nullable[Int(callee)] { break loop }
                        position += 1
                    }
                }
            }
        }
        // Depth-first search for a cycle.
        var state = [UInt8](repeating: 0, count: alternatives.count)  // 0 new, 1 on path, 2 done
        var path: [Int] = []
        func visit(_ rule: Int) throws {
            state[rule] = 1
            path.append(rule)
            for callee in leftCalls[rule] {
                if state[callee] == 1 {
                    let cycle = path[(path.firstIndex(of: callee) ?? 0)...].map { ruleNames[$0] } + [ruleNames[callee]]
                    throw ANELMError(
                        "grammar: left recursion (\(cycle.joined(separator: " → "))); a repetition of something that can match empty text is one too")
                }
                if state[callee] == 0 { try visit(callee) }
            }
            path.removeLast()
            state[rule] = 2
        }
        for rule in alternatives.indices where state[rule] == 0 { try visit(rule) }
        // The matcher expands such chains recursively: keep them short (`("a"?){0,5000}` would be 5000 deep).
        var chain = [Int](repeating: -1, count: alternatives.count)
        func longest(_ rule: Int) -> Int {
            if chain[rule] >= 0 { return chain[rule] }
            chain[rule] = 0
            chain[rule] = 1 + (leftCalls[rule].map(longest).max() ?? 0)
            return chain[rule]
        }
        for rule in alternatives.indices where longest(rule) > 1000 {
            throw ANELMError(
                "grammar: rule '\(ruleNames[rule])' starts a chain of over 1000 rules that can begin without consuming text (a long repetition of something that can be empty?)"
            )
        }
    }

    private func isNullable(from start: Int, _ nullable: [Bool]) -> Bool {
        var position = start
        while true {
            switch elements[position] {
            case .end: return true
            case .bytes: return false
            case .rule(let callee):
                if !nullable[Int(callee)] { return false }
                position += 1
            }
        }
    }
}

/// Turns parsed rules into flat alternatives of byte-set elements, desugaring groups and repetitions into
/// generated rules (named after their parent, `parent-N`).
struct GrammarCompiler {
    private let definitions: [GrammarRuleDefinition]
    private var ids: [String: Int32] = [:]
    private(set) var names: [String] = []
    /// Rule bodies as lists of alternatives of elements (without `.end`), filled as rules are compiled.
    private var bodies: [[[GrammarElement]]] = []
    private var byteSetIds: [ByteSet: Int32] = [:]
    private(set) var byteSets: [ByteSet] = []
    private var classRules: [String: Int32] = [:]
    private(set) var elements: [GrammarElement] = []
    private(set) var alternatives: [[Int32]] = []
    private(set) var rootId: Int32 = 0
    /// Bounded repetitions, recorded while compiling: a rule holding `count` copies of a block (the minimum), and
    /// chains of rules `tail_r ::= block tail_(r-1) | ε` (the optional part, rule ids for r = 1, 2, …).
    private var copyRuns: [(rule: Int32, blockLength: Int, count: Int)] = []
    private var tailChains: [(rules: [Int32], blockLength: Int)] = []
    private(set) var repetitionStarts: [[Int32]] = []
    private(set) var repetitionChain: [Int32] = []
    private(set) var repetitionLeft: [Int32] = []

    init(_ definitions: [GrammarRuleDefinition]) throws {
        self.definitions = definitions
        for definition in definitions {
            guard ids[definition.name] == nil else {
                throw ANELMError("grammar: line \(definition.line), column \(definition.column): rule '\(definition.name)' is defined twice")
            }
            ids[definition.name] = Int32(names.count)
            names.append(definition.name)
            bodies.append([])
        }
        guard let root = ids["root"] else { throw ANELMError("grammar: no 'root' rule (the start rule must be called root)") }
        rootId = root
    }

    mutating func compile() throws {
        for (index, definition) in definitions.enumerated() {
            bodies[index] = try compileAlternatives(definition.body, owner: definition.name)
        }
        for body in bodies {
            var starts: [Int32] = []
            for alternative in body {
                starts.append(Int32(elements.count))
                elements.append(contentsOf: alternative)
                elements.append(.end)
            }
            alternatives.append(starts)
        }
        repetitionChain = [Int32](repeating: -1, count: elements.count)
        repetitionLeft = [Int32](repeating: 0, count: elements.count)
        // A block's positions, including the call of the next tail rule (a return address can point at it).
        func mark(_ starts: [Int32], blockLength: Int, extra: (Int) -> Int) {
            let chain = Int32(repetitionStarts.count)
            repetitionStarts.append(starts)
            for left in 1..<starts.count {
                for position in Int(starts[left])..<(Int(starts[left]) + blockLength + extra(left)) {
                    repetitionChain[position] = chain
                    repetitionLeft[position] = Int32(left)
                }
            }
        }
        for run in copyRuns {
            let start = alternatives[Int(run.rule)][0]
            let starts = [-1] + (1...run.count).map { start + Int32((run.count - $0) * run.blockLength) }
            mark(starts, blockLength: run.blockLength) { _ in 0 }
        }
        for chain in tailChains {
            mark([-1] + chain.rules.map { alternatives[Int($0)][0] }, blockLength: chain.blockLength) { $0 >= 2 ? 1 : 0 }
        }
    }

    private mutating func compileAlternatives(_ expression: GrammarExpression, owner: String) throws -> [[GrammarElement]] {
        if case .alternatives(let options) = expression {
            return try options.map { try compileSequence($0, owner: owner) }
        }
        return [try compileSequence(expression, owner: owner)]
    }

    private mutating func compileSequence(_ expression: GrammarExpression, owner: String) throws -> [GrammarElement] {
        var out: [GrammarElement] = []
        try append(expression, to: &out, owner: owner)
        return out
    }

    private mutating func append(_ expression: GrammarExpression, to out: inout [GrammarElement], owner: String) throws {
        switch expression {
        case .sequence(let items):
            for item in items { try append(item, to: &out, owner: owner) }
        case .alternatives:
            out.append(.rule(try newRule(owner: owner, try compileAlternatives(expression, owner: owner))))
        case .literal(let values):
            for value in values {
                guard let scalar = Unicode.Scalar(value) else { throw ANELMError("grammar: \(value) is not a Unicode scalar value") }
                for byte in String(Character(scalar)).utf8 { out.append(.bytes(byteSetId(ByteSet(byte...byte)))) }
            }
        case .characterClass(let ranges, let negated):
            let scalars = UTF8Ranges.scalarRanges(ranges, negated: negated)
            guard !scalars.isEmpty else { throw ANELMError("grammar: a character class in rule '\(owner)' matches no character") }
            out.append(try characterElement(scalars, owner: owner))
        case .anyCharacter:
            out.append(try characterElement(UTF8Ranges.scalarRanges([], negated: true), owner: owner))
        case .rule(let name, let line, let column):
            guard let id = ids[name] else { throw ANELMError("grammar: line \(line), column \(column): undefined rule '\(name)'") }
            out.append(.rule(id))
        case .repetition(let item, let min, let max):
            let once = try compileSequence(item, owner: owner)
            var after: [GrammarElement] = []
            if let max {
                // (item (item (…)?)?)? nested max - min deep, so every count in between has exactly one parse.
                var tail: Int32? = nil
                var chain: [Int32] = []
                for _ in 0..<(max - min) {
                    let body = once + (tail.map { [GrammarElement.rule($0)] } ?? [])
                    let id = try newRule(owner: owner, [body, []])
                    tail = id
                    chain.append(id)
                }
                if let tail { after = [.rule(tail)] }
                if chain.count > 2 && !once.isEmpty { tailChains.append((chain, once.count)) }
            }
            if min > 2 && !once.isEmpty {
                // The copies in a rule of their own, so that their positions are one block after another.
                let body = (0..<min).flatMap { _ in once } + after
                let run = try newRule(owner: owner, [body])
                copyRuns.append((run, once.count, min))
                out.append(.rule(run))
                if max == nil { out.append(.rule(try star(once, owner: owner))) }
                return
            }
            for _ in 0..<min { out.append(contentsOf: once) }
            if max != nil {
                out.append(contentsOf: after)
            } else {
                out.append(.rule(try star(once, owner: owner)))
            }
        }
    }

    /// star ::= item star | ε — right recursion: the stack does not grow with the count.
    private mutating func star(_ once: [GrammarElement], owner: String) throws -> Int32 {
        let id = Int32(names.count)
        names.append("\(owner)-\(names.count)")
        bodies.append([once + [.rule(id)], []])
        return id
    }

    private mutating func newRule(owner: String, _ body: [[GrammarElement]]) throws -> Int32 {
        let id = Int32(names.count)
        names.append("\(owner)-\(names.count)")
        bodies.append(body)
        return id
    }

    /// One byte set when every character is ASCII, else a rule with one alternative per UTF-8 byte pattern.
    private mutating func characterElement(_ scalars: [ClosedRange<UInt32>], owner: String) throws -> GrammarElement {
        let sequences = UTF8Ranges.byteSequences(scalars)
        var single = ByteSet()
        var longer: [[ByteSet]] = []
        for sequence in sequences {
            if sequence.count == 1 { single.formUnion(sequence[0]) } else { longer.append(sequence) }
        }
        if longer.isEmpty { return .bytes(byteSetId(single)) }
        let key = scalars.map { "\($0.lowerBound)-\($0.upperBound)" }.joined(separator: ",")
        if let id = classRules[key] { return .rule(id) }
        var body: [[GrammarElement]] = []
        if single != ByteSet() { body.append([.bytes(byteSetId(single))]) }
        for sequence in longer { body.append(sequence.map { .bytes(byteSetId($0)) }) }
        let id = try newRule(owner: owner, body)
        classRules[key] = id
        return .rule(id)
    }

    private mutating func byteSetId(_ set: ByteSet) -> Int32 {
        if let id = byteSetIds[set] { return id }
        let id = Int32(byteSets.count)
        byteSets.append(set)
        byteSetIds[set] = id
        return id
    }
}

/// Unicode scalar ranges and the UTF-8 byte patterns that spell them.
enum UTF8Ranges {
    /// Sorted, merged ranges of scalar values (surrogates removed); `negated` takes the complement.
    static func scalarRanges(_ ranges: [ClosedRange<UInt32>], negated: Bool) -> [ClosedRange<UInt32>] {
        var merged: [ClosedRange<UInt32>] = []
        for range in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = merged.last, range.lowerBound <= last.upperBound &+ 1 {
                merged[merged.count - 1] = last.lowerBound...max(last.upperBound, range.upperBound)
            } else {
                merged.append(range)
            }
        }
        if negated {
            var complement: [ClosedRange<UInt32>] = []
            var next: UInt32 = 0
            for range in merged {
                if range.lowerBound > next { complement.append(next...(range.lowerBound - 1)) }
                next = range.upperBound + 1
            }
            if next <= 0x10FFFF { complement.append(next...0x10FFFF) }
            merged = complement
        }
        // Surrogates are not scalar values.
        var out: [ClosedRange<UInt32>] = []
        for range in merged {
            let low = range.lowerBound
            let high = min(range.upperBound, 0x10FFFF)
            guard low <= high else { continue }
            if high < 0xD800 || low > 0xDFFF {
                out.append(low...high)
            } else {
                if low < 0xD800 { out.append(low...0xD7FF) }
                if high > 0xDFFF { out.append(0xE000...high) }
            }
        }
        return out
    }

    /// Byte patterns (one byte set per position) whose union is exactly the UTF-8 encodings of `ranges`.
    static func byteSequences(_ ranges: [ClosedRange<UInt32>]) -> [[ByteSet]] {
        var out: [[ByteSet]] = []
        for range in ranges { split(range.lowerBound, range.upperBound, into: &out) }
        return out
    }

    private static func split(_ low: UInt32, _ high: UInt32, into out: inout [[ByteSet]]) {
        // Ranges that cross an encoded-length boundary are cut there first.
        for boundary: UInt32 in [0x7F, 0x7FF, 0xFFFF] where low <= boundary && high > boundary {
            split(low, boundary, into: &out)
            split(boundary + 1, high, into: &out)
            return
        }
        if high <= 0x7F {
            out.append([ByteSet(UInt8(low)...UInt8(high))])
            return
        }
        let length = high <= 0x7FF ? 2 : high <= 0xFFFF ? 3 : 4
        // Cut until every continuation position spans either one value or all 64.
        for i in 1..<length {
            let mask: UInt32 = (1 << (6 * UInt32(i))) - 1
            if low & ~mask != high & ~mask {
                if low & mask != 0 {
                    split(low, low | mask, into: &out)
                    split((low | mask) + 1, high, into: &out)
                    return
                }
                if high & mask != mask {
                    split(low, (high & ~mask) - 1, into: &out)
                    split(high & ~mask, high, into: &out)
                    return
                }
            }
        }
        let a = encode(low)
        let b = encode(high)
        out.append((0..<a.count).map { ByteSet(a[$0]...b[$0]) })
    }

    static func encode(_ value: UInt32) -> [UInt8] {
        guard let scalar = Unicode.Scalar(value) else { return [] }
        return Array(String(Character(scalar)).utf8)
    }
}
