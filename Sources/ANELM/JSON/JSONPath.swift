import Foundation

/// Where a value sits in a JSON document, for error messages: `tokenizer.json: model.vocab["x"]`.
public struct JSONPath: Sendable, CustomStringConvertible {
    public enum Component: Sendable {
        case key(String)
        case index(Int)
    }

    /// The document's name ("tokenizer.json"); empty for a bare path.
    public var source: String
    public var components: [Component]

    public init(source: String, components: [Component] = []) {
        self.source = source
        self.components = components
    }

    public func appending(_ key: String) -> JSONPath { JSONPath(source: source, components: components + [.key(key)]) }
    public func appending(_ index: Int) -> JSONPath { JSONPath(source: source, components: components + [.index(index)]) }

    /// `source: a.b[2]["odd key"]`: plain keys dotted, others quoted (escaped and cut, since they come from files).
    public var description: String {
        var path = ""
        // A path hundreds of levels deep is cut in the middle, so an error stays one readable line.
        let shown = components.count <= 16 ? components[...] : components.prefix(6) + components.suffix(6)
        for (i, component) in shown.enumerated() {
            if i == 6 && components.count > 16 { path += "…" }
            switch component {
            case .index(let i): path += "[\(i)]"
            case .key(let key) where Self.isPlainKey(key): path += path.isEmpty ? key : "." + key
            case .key(let key): path += "[\(quoted(key))]"
            }
        }
        if source.isEmpty { return path.isEmpty ? "the document" : path }
        return path.isEmpty ? source : "\(source): \(path)"
    }

    private static func isPlainKey(_ key: String) -> Bool {
        guard let first = key.utf8.first, !(0x30...0x39).contains(first), key.utf8.count <= 64 else { return false }
        return key.utf8.allSatisfy { ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7a) || (0x30...0x39).contains($0) || $0 == 0x5f }
    }
}

/// A JSON value with its path in the document: typed reads that throw, naming the path, when a file has the
/// wrong shape (`tokenizer.json: model.merges[3]: expected a string`).
public struct JSONNode: Sendable {
    public let value: JSONValue
    public let path: JSONPath

    public init(_ value: JSONValue, path: JSONPath) {
        self.value = value
        self.path = path
    }

    /// Parses `data` and returns its root, which must be an object; `source` names the file in errors.
    public static func parseObject(_ data: Data, source: String) throws -> JSONNode {
        let root = JSONNode(try JSONValue.parse(data, source: source), path: JSONPath(source: source))
        _ = try root.objectValue()
        return root
    }

    public func error(_ message: String) -> ANELMError { ANELMError("\(path): \(message)") }

    /// The member `key` (null when missing), with its path.
    public func member(_ key: String) -> JSONNode {
        JSONNode(value.objectValue?[key] ?? .null, path: path.appending(key))
    }

    // MARK: This value as a type

    public func objectValue() throws -> JSONObject {
        guard let object = value.objectValue else { throw error("expected an object, found \(value.kindDescription)") }
        return object
    }

    public func stringValue() throws -> String {
        guard let string = value.stringValue else { throw error("expected a string, found \(value.kindDescription)") }
        return string
    }

    /// A whole number (`3` or `3.0`).
    public func intValue() throws -> Int {
        guard let int = value.integerValue else {
            if case .double(let d) = value { throw error("expected an integer, found \(d)") }
            throw error("expected an integer, found \(value.kindDescription)")
        }
        return int
    }

    public func boolValue() throws -> Bool {
        guard let bool = value.boolValue else { throw error("expected true or false, found \(value.kindDescription)") }
        return bool
    }

    public func arrayValue() throws -> [JSONValue] {
        guard let items = value.arrayValue else { throw error("expected an array, found \(value.kindDescription)") }
        return items
    }

    /// The items, each with its path.
    public func items() throws -> [JSONNode] {
        try arrayValue().enumerated().map { JSONNode($0.element, path: path.appending($0.offset)) }
    }

    // MARK: Members by key

    /// Missing and null alike.
    public func isNull(_ key: String) -> Bool { value.objectValue?[key]?.isNull ?? true }

    public func object(_ key: String) throws -> JSONNode {
        let node = member(key)
        _ = try node.objectValue()
        return node
    }

    public func optionalObject(_ key: String) throws -> JSONNode? { isNull(key) ? nil : try object(key) }
    public func string(_ key: String) throws -> String { try member(key).stringValue() }
    public func optionalString(_ key: String) throws -> String? { isNull(key) ? nil : try string(key) }
    public func int(_ key: String) throws -> Int { try member(key).intValue() }
    public func bool(_ key: String, default fallback: Bool) throws -> Bool { isNull(key) ? fallback : try member(key).boolValue() }
    public func optionalBool(_ key: String) throws -> Bool? { isNull(key) ? nil : try member(key).boolValue() }
    public func array(_ key: String) throws -> [JSONNode] { try member(key).items() }

    /// An array of objects.
    public func objects(_ key: String) throws -> [JSONNode] {
        try array(key).map { item in
            _ = try item.objectValue()
            return item
        }
    }
}
