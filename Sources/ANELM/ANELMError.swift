/// The one error type anelm's library throws: a clear, single-line message for the person who
/// gave us the file, flag or request. Messages often quote what a file or request said, so the text is
/// made safe for a terminal and a log line: control characters (newlines, ESC, …) become `\u{…}` escapes,
/// and a message is at most `maximumLength` characters.
public struct ANELMError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String
    public static let maximumLength = 1_000

    public init(_ message: String) { self.message = Self.printable(message, limit: Self.maximumLength) }
    public var description: String { message }

    /// `text` with control characters escaped, cut to `limit` characters (saying how many were left out).
    public static func printable(_ text: String, limit: Int) -> String {
        var out = ""
        var written = 0
        var read = 0
        for scalar in text.unicodeScalars {
            let controls = scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0x2028 || scalar.value == 0x2029
            let piece = controls ? "\\u{\(String(scalar.value, radix: 16))}" : String(scalar)
            if written + piece.unicodeScalars.count > limit {
                return out + "… (\(text.unicodeScalars.count - read) more characters)"
            }
            out += piece
            written += piece.unicodeScalars.count
            read += 1
        }
        return out
    }
}

/// A name or string read from a file or a request as a quoted literal for an error message: quotes and control
/// characters escaped, cut to 80 characters, so a crafted file cannot write escape sequences or megabytes to
/// the terminal.
func quoted(_ text: String) -> String {
    var out = "\""
    for (i, scalar) in text.unicodeScalars.enumerated() {
        if i == 80 {
            out += "…"
            break
        }
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 || (0x7f...0x9f).contains(scalar.value) {
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}
