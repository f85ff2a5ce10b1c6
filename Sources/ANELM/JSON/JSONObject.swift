/// A JSON object: members in their order (chat templates render `tools` schemas as given), looked up by key in
/// O(1). Equal objects have the same members, in any order. Keys compare by their exact Unicode scalars, as Python's
/// json does: Swift's String equality (canonical equivalence) would make "য়" (U+09DF) and "য" + U+09BC one key, and
/// SentencePiece vocabularies such as Gemma's hold both.
public struct JSONObject: Sendable {
    public private(set) var keys: [String] = []
    public private(set) var values: [JSONValue] = []
    /// Positions by key, kept only past `linearLookupLimit` members: most objects are small, and a linear
    /// scan over a few keys is cheaper than a dictionary per object.
    private var positions: [ExactString: Int] = [:]
    private static let linearLookupLimit = 8

    /// An empty object.
    public init() {}

    /// Members in the given order; a repeated key keeps its first position and its last value.
    public init(_ members: [(String, JSONValue)]) {
        for (key, value) in members { self[key] = value }
    }

    public var count: Int { keys.count }
    public var isEmpty: Bool { keys.isEmpty }

    /// The position of `key` among the members.
    public func index(of key: String) -> Int? {
        if keys.count > Self.linearLookupLimit { return positions[ExactString(key)] }
        return keys.firstIndex { $0.utf8.elementsEqual(key.utf8) }
    }

    /// The value of `key`; setting nil removes the member.
    public subscript(key: String) -> JSONValue? {
        get { index(of: key).map { values[$0] } }
        set {
            if let position = index(of: key) {
                if let newValue {
                    values[position] = newValue
                } else {
                    keys.remove(at: position)
                    values.remove(at: position)
                    rebuildPositions()
                }
            } else if let newValue {
                _ = appendNew(key, newValue)
            }
        }
    }

    /// Adds a member unless its key is present already (then false, and the object is left to be discarded:
    /// the parser's duplicate check and insertion are one hash lookup).
    mutating func appendNew(_ key: String, _ value: JSONValue) -> Bool {
        if keys.count >= Self.linearLookupLimit {
            if positions.isEmpty { rebuildPositions(upTo: keys.count) }
            if positions.updateValue(keys.count, forKey: ExactString(key)) != nil { return false }
        } else if keys.contains(where: { $0.utf8.elementsEqual(key.utf8) }) {
            return false
        }
        keys.append(key)
        values.append(value)
        return true
    }

    private mutating func rebuildPositions(upTo limit: Int = Self.linearLookupLimit + 1) {
        positions = [:]
        guard keys.count >= limit else { return }
        positions.reserveCapacity(keys.count)
        for (i, key) in keys.enumerated() { positions[ExactString(key)] = i }
    }
}

extension JSONObject: Sequence {
    public func makeIterator() -> Zip2Sequence<[String], [JSONValue]>.Iterator { zip(keys, values).makeIterator() }
    public var underestimatedCount: Int { keys.count }
}

extension JSONObject: Equatable {
    public static func == (a: JSONObject, b: JSONObject) -> Bool {
        guard a.count == b.count else { return false }
        return zip(a.keys, a.values).allSatisfy { key, value in b[key] == value }
    }
}

extension JSONObject: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, JSONValue)...) { self.init(elements) }
}
