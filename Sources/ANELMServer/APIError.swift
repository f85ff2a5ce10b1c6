import ANELM
import Foundation
import Hummingbird

/// A failure shown to the client as OpenAI's `{"error": {...}}` body.
struct APIError: Error, Sendable {
    let status: HTTPResponse.Status
    let message: String
    let type: String
    let code: String?
    let param: String?
    /// Sent with the error body: `WWW-Authenticate` on 401, `Retry-After` on every 503.
    let headers: HTTPFields

    init(
        _ status: HTTPResponse.Status, _ message: String, type: String = "invalid_request_error", code: String? = nil, param: String? = nil,
        headers: HTTPFields = [:]
    ) {
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        var headers = headers
        if status == .serviceUnavailable, headers[.retryAfter] == nil { headers[.retryAfter] = "1" }
        self.headers = headers
    }

    var body: JSONValue {
        [
            "error": [
                "message": .string(message), "type": .string(type),
                "code": code.map(JSONValue.string) ?? .null, "param": param.map(JSONValue.string) ?? .null,
            ]
        ]
    }

    static func invalid(_ message: String, param: String? = nil, code: String = "invalid_value") -> APIError {
        APIError(.badRequest, message, code: code, param: param)
    }

    static func wrongType(_ param: String, _ expected: String) -> APIError {
        APIError(.badRequest, "'\(param)' must be \(expected)", code: "invalid_type", param: param)
    }

    static let unauthorized = APIError(
        .unauthorized, "missing or invalid API key (send 'Authorization: Bearer <key>')", code: "invalid_api_key",
        headers: [.wwwAuthenticate: "Bearer"])
    static let queueFull = APIError(
        .serviceUnavailable, "the server is busy: too many requests are waiting, retry later", type: "server_error", code: "queue_full")
    static let shuttingDown = APIError(
        .serviceUnavailable, "the server is shutting down", type: "server_error", code: "shutting_down",
        headers: [.retryAfter: "10"])
}

extension JSONValue {
    /// A request body as JSON, strictly (a repeated key is refused too: the first would win and the second never be
    /// checked); invalid JSON is a 400 `invalid_json`.
    static func requestBody(_ data: Data) throws -> JSONValue {
        do {
            return try JSONValue.parse(data, source: "the request body")
        } catch let error as ANELMError {
            throw APIError.invalid("the request body is not valid JSON (\(error.message))", code: "invalid_json")
        }
    }
}

extension JSONObject {
    /// A request body that must be a JSON object.
    static func requestBody(_ data: Data) throws -> JSONObject {
        guard let object = try JSONValue.requestBody(data).objectValue else {
            throw APIError.invalid("the request body must be a JSON object", code: "invalid_json")
        }
        return object
    }
}
