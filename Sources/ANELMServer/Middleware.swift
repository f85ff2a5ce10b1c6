import Foundation
import Hummingbird
import Logging

/// Counts every request for `/metrics` by endpoint and final status.
struct RequestCountingMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ServerMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        let endpoint = Endpoints.paths.contains(path) ? path : "other"
        do {
            let response = try await next(request, context)
            metrics.countRequest(endpoint: endpoint, status: response.status.code)
            return response
        } catch {
            // Only reached when an inner middleware let an error through; it becomes a 500.
            metrics.countRequest(endpoint: endpoint, status: 500)
            throw error
        }
    }
}

/// Turns every failure into OpenAI's `{"error": {...}}` body: `APIError`s as they are, the
/// router's "no route" as 404 (405 on a known path), anything else as 500, logged.
struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        do {
            return try await next(request, context)
        } catch let error as APIError {
            if error.status.code >= 500 {
                logger.warning("request refused", metadata: ["path": "\(path)", "status": "\(error.status.code)", "error": "\(error.message)"])
            } else {
                logger.info("bad request", metadata: ["path": "\(path)", "status": "\(error.status.code)", "error": "\(error.message)"])
            }
            return Endpoints.json(error.status, error.body, headers: error.headers)
        } catch let error as HTTPError where error.status == .notFound {
            let method = request.method.rawValue
            let refusal =
                Endpoints.paths.contains(path)
                ? APIError(.methodNotAllowed, "\(method) is not allowed on \(path)", code: "method_not_allowed")
                : APIError(.notFound, "no route \(method) \(path)", code: "not_found")
            logger.info("bad request", metadata: ["path": "\(path)", "status": "\(refusal.status.code)", "error": "\(refusal.message)"])
            return Endpoints.json(refusal.status, refusal.body)
        } catch {
            logger.error("request failed", metadata: ["path": "\(path)", "error": "\(error)"])
            let failure = APIError(.internalServerError, "internal error: \(error)", type: "server_error", code: "internal_error")
            return Endpoints.json(failure.status, failure.body)
        }
    }
}

/// When a key is configured, every path but `openPaths` needs `Authorization: Bearer <key>`
/// (the scheme in any case, as HTTP has it).
struct APIKeyMiddleware<Context: RequestContext>: RouterMiddleware {
    let apiKey: String?
    let openPaths: Set<String>

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let apiKey, !openPaths.contains(request.uri.path) {
            guard let token = Self.bearerToken(request.headers[.authorization]), Self.sameBytes(token, apiKey) else { throw APIError.unauthorized }
        }
        return try await next(request, context)
    }

    static func bearerToken(_ authorization: String?) -> Substring? {
        guard let authorization, let space = authorization.firstIndex(of: " "),
            authorization[..<space].lowercased() == "bearer"
        else { return nil }
        return authorization[space...].drop { $0 == " " }
    }

    /// Compares in a time that depends only on the key's length, so that timing the answers
    /// does not reveal how much of a guess was right.
    static func sameBytes(_ given: Substring, _ key: String) -> Bool {
        let given = Array(given.utf8)
        let key = Array(key.utf8)
        var difference: UInt8 = given.count == key.count ? 0 : 1
        for i in key.indices { difference |= key[i] ^ (i < given.count ? given[i] : 0) }
        return difference == 0
    }
}
