/// The one error type anelm's library throws: a clear, single-line message for the person who
/// gave us the file, flag or request.
public struct ANELMError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
