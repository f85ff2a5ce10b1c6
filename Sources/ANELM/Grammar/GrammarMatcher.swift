/// Where a grammar can be after some bytes: a set of parse stacks (a pushdown matcher, as llama.cpp's).
///
/// Stacks are interned as linked nodes `(position, below)`: equal stacks share one id, so a state is a small
/// sorted array of ids. A stack's top is always a byte-set element, and every byte in that set leads to
/// the same successor stacks — memoized per id, so stepping a byte is a bit test and an array lookup.
/// Id 0 is the empty stack: the grammar is complete.
final class GrammarMatcher {
    let grammar: Grammar
    /// Per node: the element position it continues at, the node below, the top's byte set (-1: not a top).
    private(set) var nodePosition: [Int32] = [0]
    private(set) var nodeBelow: [Int32] = [0]
    private(set) var nodeByteSet: [Int32] = [-1]
    private var nodeIds: [Int64: Int32] = [:]
    /// Stacks after the top's byte, per node (nil until first needed).
    private var successorCache: [[Int32]?] = [nil]
    private let byteSets: [ByteSet]
    /// The stacks before any byte.
    private(set) var initialStacks: [Int32] = []
    /// Parse states (sorted stack sets) met by the trie walks, and per state and byte the state after it: 256 entries
    /// a state, `unknown` until first needed, `dead` when the byte is not allowed. Sets of stacks repeat across the
    /// trie's nodes (inside a string every ordinary byte leads back to the same set), so a walk mostly looks them up.
    private var states: [[Int32]] = []
    private var stateIDs: [[Int32]: Int32] = [:]
    private var transitions: [Int32] = []
    private static let unknown: Int32 = -2
    static let dead: Int32 = -1
    /// More states than this (a 256-entry row each) and the table starts over at the next walk.
    private static let stateLimit = 1 << 16

    static let complete: Int32 = 0

    init(_ grammar: Grammar) {
        self.grammar = grammar
        byteSets = grammar.byteSets
        var start: [Int32] = []
        for alternative in grammar.alternatives[Int(grammar.root)] { expand(alternative, below: 0, into: &start) }
        initialStacks = Self.normalized(start)
    }

    var nodeCount: Int { nodePosition.count }

    @inline(__always) func byteSet(ofTop id: Int32) -> ByteSet? {
        let set = nodeByteSet[Int(id)]
        return set < 0 ? nil : byteSets[Int(set)]
    }

    /// Stacks after consuming one byte of the set on top of `id`.
    @inline(__always) func successors(_ id: Int32) -> [Int32] {
        if let cached = successorCache[Int(id)] { return cached }
        var out: [Int32] = []
        expand(nodePosition[Int(id)] + 1, below: nodeBelow[Int(id)], into: &out)
        out = Self.normalized(out)
        successorCache[Int(id)] = out
        return out
    }

    /// The stacks after `byte` from `stacks` (empty: the byte is not allowed).
    func advance(_ stacks: [Int32], byte: UInt8) -> [Int32] {
        var out: [Int32] = []
        for id in stacks where id != Self.complete {
            let set = nodeByteSet[Int(id)]
            if byteSets[Int(set)].contains(byte) {
                for next in successors(id) where !out.contains(next) { out.append(next) }
            }
        }
        return out.count > 1 ? out.sorted() : out
    }

    func advance(_ stacks: [Int32], bytes: [UInt8]) -> [Int32] {
        var current = stacks
        for byte in bytes {
            current = advance(current, byte: byte)
            if current.isEmpty { break }
        }
        return current
    }

    /// The id of the parse state `stacks` (interned: equal sets, equal ids).
    func state(of stacks: [Int32]) -> Int32 {
        let key = Self.normalized(stacks)
        if let id = stateIDs[key] { return id }
        let id = Int32(states.count)
        states.append(key)
        stateIDs[key] = id
        transitions.append(contentsOf: repeatElement(Self.unknown, count: 256))
        return id
    }

    /// The state after `byte` from `state`, or `dead`.
    @inline(__always) func step(_ state: Int32, byte: UInt8) -> Int32 {
        let slot = Int(state) << 8 | Int(byte)
        let known = transitions[slot]
        if known != Self.unknown { return known }
        let next = advance(states[Int(state)], byte: byte)
        let id = next.isEmpty ? Self.dead : self.state(of: next)
        transitions[slot] = id
        return id
    }

    /// Forgets the memoized states once they are many (between walks: a walk holds state ids).
    func trimStateTable() {
        guard states.count > Self.stateLimit else { return }
        states = []
        stateIDs = [:]
        transitions = []
    }

    private var canonicalIds: [Int64: Int32] = [:]

    /// The stack `id` with every bounded repetition that has more than `limit` blocks left moved to the block with
    /// `limit` left (`Grammar.canonicalPosition`): the same tokens of fewer than `limit` bytes are allowed from
    /// both, so masks of such tokens can be shared (inside `"x"{0,40}` every position is another stack).
    func canonical(_ id: Int32, limit: Int32) -> Int32 {
        if id == Self.complete { return id }
        let key = Int64(id) << 20 | Int64(limit)
        if let known = canonicalIds[key] { return known }
        // Down to the bottom, then rebuilt from it (stacks can be deep: no recursion).
        var chain: [Int32] = []
        var node = id
        while node != Self.complete {
            chain.append(node)
            node = nodeBelow[Int(node)]
        }
        var below = Self.complete
        for old in chain.reversed() {
            below = self.node(grammar.canonicalPosition(nodePosition[Int(old)], limit: limit), below)
        }
        canonicalIds[key] = below
        return below
    }

    /// The stacks after `bytes` from the start.
    func matchState(_ bytes: [UInt8]) -> [Int32] { advance(initialStacks, bytes: bytes) }

    /// Whether `bytes` from `stacks` is allowed (a prefix of some match).
    func accepts(_ stacks: [Int32], bytes: [UInt8]) -> Bool { !advance(stacks, bytes: bytes).isEmpty }

    /// Pushes the stacks that continue at `position` with `below` under it, expanded until each top is a byte set.
    private func expand(_ position: Int32, below: Int32, into out: inout [Int32]) {
        switch grammar.elements[Int(position)] {
        case .bytes:
            out.append(node(position, below))
        case .end:
            if below == Self.complete {
                out.append(Self.complete)
            } else {
                expand(nodePosition[Int(below)], below: nodeBelow[Int(below)], into: &out)
            }
        case .rule(let rule):
            // No return address when the call is the last element (tail call): right recursion stays flat.
            let returnTo = grammar.elements[Int(position) + 1] == .end ? below : node(position + 1, below)
            for alternative in grammar.alternatives[Int(rule)] { expand(alternative, below: returnTo, into: &out) }
        }
    }

    /// The interned stack `position` on top of `below` (a return address and a top are the same node).
    private func node(_ position: Int32, _ below: Int32) -> Int32 {
        let key = Int64(position) << 32 | Int64(UInt32(bitPattern: below))
        if let id = nodeIds[key] { return id }
        var byteSet: Int32 = -1
        if case .bytes(let set) = grammar.elements[Int(position)] { byteSet = set }
        let id = Int32(nodePosition.count)
        nodePosition.append(position)
        nodeBelow.append(below)
        nodeByteSet.append(byteSet)
        successorCache.append(nil)
        nodeIds[key] = id
        return id
    }

    private static func normalized(_ ids: [Int32]) -> [Int32] { Array(Set(ids)).sorted() }
}
