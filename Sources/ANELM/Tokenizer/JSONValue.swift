import Foundation

/// Typed, throwing access to a parsed JSON object, so bad tokenizer files give a clear error instead of a crash.
struct JSONObject {
    let fields: [String: Any]
    /// Where this object sits in the file, for error messages.
    let path: String

    init(_ value: Any?, path: String) throws {
        guard let fields = value as? [String: Any] else { throw ANELMError("\(path): expected a JSON object") }
        self.fields = fields
        self.path = path
    }

    /// Parses `data` as a JSON object.
    static func parse(_ data: Data, what: String) throws -> JSONObject {
        let value: Any
        do {
            value = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        } catch {
            throw ANELMError("\(what) is not valid JSON")
        }
        return try JSONObject(value, path: what)
    }

    func isNull(_ key: String) -> Bool { fields[key] == nil || fields[key] is NSNull }

    func object(_ key: String) throws -> JSONObject { try JSONObject(fields[key], path: "\(path).\(key)") }

    func optionalObject(_ key: String) throws -> JSONObject? {
        isNull(key) ? nil : try object(key)
    }

    func string(_ key: String) throws -> String {
        guard let value = fields[key] as? String else { throw ANELMError("\(path).\(key): expected a string") }
        return value
    }

    func optionalString(_ key: String) throws -> String? {
        isNull(key) ? nil : try string(key)
    }

    func int(_ key: String) throws -> Int {
        guard let value = JSONObject.asInt(fields[key]) else { throw ANELMError("\(path).\(key): expected an integer") }
        return value
    }

    func bool(_ key: String, default fallback: Bool) throws -> Bool {
        if isNull(key) { return fallback }
        guard let value = JSONObject.asBool(fields[key]) else { throw ANELMError("\(path).\(key): expected true or false") }
        return value
    }

    func optionalBool(_ key: String) throws -> Bool? {
        isNull(key) ? nil : try bool(key, default: false)
    }

    func array(_ key: String) throws -> [Any] {
        guard let value = fields[key] as? [Any] else { throw ANELMError("\(path).\(key): expected an array") }
        return value
    }

    func objects(_ key: String) throws -> [JSONObject] {
        try array(key).enumerated().map { try JSONObject($0.element, path: "\(path).\(key)[\($0.offset)]") }
    }

    static func asInt(_ value: Any?) -> Int? {
        // Checked before Bool: Foundation on Linux bridges 0 and 1 to Bool too.
        if let int = value as? Int { return int }
        if let double = value as? Double, double.rounded() == double, abs(double) < 1e15 { return Int(double) }
        return nil
    }

    static func asBool(_ value: Any?) -> Bool? {
        if let bool = value as? Bool { return bool }
        return nil
    }
}
