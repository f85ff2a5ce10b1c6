import ANELM
import ANELMContext
import Foundation
import Hummingbird

/// The context store behind `anelm serve --store`: grounded chat completions (the `"context"` extension field) and
/// `POST /v1/feedback`. The relevance model is looked up per request (`RelevanceSlot`): a version that
/// `anelm context train` accepts is used from the next request on, without a restart, while requests in flight
/// finish on the version they started with (their search holds it) and log that version.
extension Endpoints {
    /// `POST /v1/feedback` `{"answer_id": N, "chunks": [{"id": C, "useful": true}, …]}`: a person's word on the
    /// chunks of a grounded answer (its id is in the answer's `context.answer_id`).
    func feedback(_ request: Request) async throws -> Response {
        guard let context else {
            throw APIError.invalid("this server has no context store; start it with --store", code: "no_context_store")
        }
        let body = try await readBody(request)
        let object = try JSONObject.requestBody(body)
        for key in object.keys where !["answer_id", "chunks"].contains(key) {
            throw APIError.invalid("unknown field '\(key)'; feedback takes answer_id and chunks", param: key)
        }
        guard let answer = object["answer_id"]?.integerValue else { throw APIError.wrongType("answer_id", "an integer") }
        guard let items = object["chunks"]?.arrayValue, !items.isEmpty else { throw APIError.wrongType("chunks", "a non-empty array") }
        var marks: [(Int64, Bool)] = []
        for (i, item) in items.enumerated() {
            guard let fields = item.objectValue, let id = fields["id"]?.integerValue, let useful = fields["useful"]?.boolValue, fields.count == 2 else {
                throw APIError.wrongType("chunks[\(i)]", "an object with exactly an integer 'id' and a boolean 'useful'")
            }
            marks.append((Int64(id), useful))
        }
        do {
            _ = try context.store.loggedAnswer(Int64(answer))
        } catch let e as ANELMError {
            throw APIError(.notFound, e.message, code: "answer_not_found", param: "answer_id")
        }
        do {
            for (id, useful) in marks { try context.store.recordFeedback(answerID: Int64(answer), chunkID: id, useful: useful) }
        } catch let e as ANELMError {
            throw APIError.invalid(e.message, param: "chunks")
        }
        return Self.json(.ok, ["answer_id": .int(answer), "recorded": .int(marks.count)])
    }
}
