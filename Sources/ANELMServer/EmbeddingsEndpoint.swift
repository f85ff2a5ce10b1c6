import ANELM
import Foundation
import Hummingbird

/// The embedding model served next to the chat model (`anelm serve --embedding-model`). Requests run one at a
/// time on their own queue: the encoder's thread pool takes one pass at a time, and the server's event loops
/// never block on it.
public final class ServedEmbedder: @unchecked Sendable {
    let embedder: SentenceEmbedder
    /// The id clients name it by: its folder's name.
    let id: String
    let created = Int(Date().timeIntervalSince1970)
    private let queue = DispatchQueue(label: "anelm.embeddings")

    public init(_ embedder: SentenceEmbedder, name: String) {
        self.embedder = embedder
        id = name
    }

    func embed(_ inputs: [EmbeddingInput]) async throws -> [[Float]] {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { [embedder] in continuation.resume(with: Result { try embedder.embed(inputs) }) }
        }
    }

    var modelObject: JSONValue {
        [
            "id": .string(id), "object": "model", "created": .int(created), "owned_by": "anelm", "dimensions": .int(embedder.dimensions),
            "max_input_tokens": .int(embedder.maxSequenceLength),
        ]
    }
}

/// A `POST /v1/embeddings` body, OpenAI's shape: `input` a string, an array of strings, an array of token ids or an
/// array of such arrays; `encoding_format` float or base64; `dimensions` only as the model's own (no Matryoshka
/// truncation: the model was not trained for it); `model` optional, and if given the served embedder's id.
struct EmbeddingsRequest {
    enum Item {
        case text(String)
        case tokens([Int])
    }

    var items: [Item]
    var model: String?
    var base64: Bool

    /// OpenAI's limit on inputs per request.
    static let maxItems = 2048

    static func parse(_ data: Data, dimensions: Int) throws -> EmbeddingsRequest {
        let fields = try JSONObject.requestBody(data)
        func present(_ key: String) -> JSONValue? { fields[key].flatMap { $0.isNull ? nil : $0 } }

        var model: String?
        if let value = present("model") {
            guard let name = value.stringValue else { throw APIError.wrongType("model", "a string") }
            model = name
        }
        var base64 = false
        if let value = present("encoding_format") {
            switch value.stringValue {
            case "float"?: base64 = false
            case "base64"?: base64 = true
            default: throw APIError.invalid("'encoding_format' must be \"float\" or \"base64\"", param: "encoding_format")
            }
        }
        if let value = present("dimensions") {
            guard let requested = value.integerValue else { throw APIError.wrongType("dimensions", "an integer") }
            guard requested == dimensions else {
                throw APIError.invalid(
                    "this model makes \(dimensions)-dimensional embeddings and was not trained to be shortened; 'dimensions' may only be \(dimensions)",
                    param: "dimensions", code: "unsupported_value")
            }
        }
        if let value = present("user"), value.stringValue == nil { throw APIError.wrongType("user", "a string") }
        guard let input = present("input") else { throw APIError.invalid("'input' is required", param: "input", code: "missing_required_parameter") }
        return EmbeddingsRequest(items: try items(input), model: model, base64: base64)
    }

    private static func items(_ input: JSONValue) throws -> [Item] {
        let shape = "a string, an array of strings, an array of token ids or an array of arrays of token ids"
        func tokens(_ values: [JSONValue], at index: Int?) throws -> [Int] {
            let param = index.map { "input[\($0)]" } ?? "input"
            guard !values.isEmpty else { throw APIError.invalid("'\(param)' is an empty token array", param: "input") }
            return try values.map { value in
                guard let id = value.integerValue, id >= 0 else { throw APIError.invalid("'\(param)' must hold non-negative integer token ids", param: "input") }
                return id
            }
        }
        func text(_ s: String, at index: Int?) throws -> Item {
            guard !s.isEmpty else {
                throw APIError.invalid("'\(index.map { "input[\($0)]" } ?? "input")' is an empty string; every input must have text", param: "input")
            }
            return .text(s)
        }
        switch input {
        case .string(let s):
            return [try text(s, at: nil)]
        case .array(let values):
            guard !values.isEmpty else { throw APIError.invalid("'input' is an empty array", param: "input") }
            guard values.count <= maxItems else { throw APIError.invalid("'input' holds \(values.count) items; at most \(maxItems)", param: "input") }
            if values.allSatisfy({ $0.integerValue != nil }) { return [.tokens(try tokens(values, at: nil))] }
            return try values.enumerated().map { index, value in
                switch value {
                case .string(let s): return try text(s, at: index)
                case .array(let ids): return .tokens(try tokens(ids, at: index))
                default: throw APIError.wrongType("input", shape)
                }
            }
        default:
            throw APIError.wrongType("input", shape)
        }
    }
}

extension Endpoints {
    func embeddings(_ request: Request, served: ServedEmbedder) async throws -> Response {
        let body = try await readBody(request)
        let embedder = served.embedder
        let parsed = try EmbeddingsRequest.parse(body, dimensions: embedder.dimensions)
        if let name = parsed.model, name != served.id {
            throw APIError(.notFound, "the embedding model '\(name)' does not exist; this server embeds with '\(served.id)'", code: "model_not_found", param: "model")
        }
        let inputs = try parsed.items.enumerated().map { index, item -> EmbeddingInput in
            switch item {
            case .text(let text): return embedder.input(text)
            case .tokens(let ids):
                do { return try embedder.input(tokenIds: ids) } catch let error as ANELMError { throw APIError.invalid("input[\(index)]: \(error.message)", param: "input") }
            }
        }
        let vectors = try await served.embed(inputs)
        var data: [JSONValue] = []
        data.reserveCapacity(vectors.count)
        for (index, (vector, input)) in zip(vectors, inputs).enumerated() {
            var item: JSONObject = ["object": "embedding", "index": .int(index), "embedding": parsed.base64 ? .string(Self.base64(vector)) : Self.floats(vector)]
            // Said, not hidden: the model read only the first maxSequenceLength tokens of this input.
            if input.truncated {
                item["truncated"] = true
                item["input_tokens"] = .int(input.originalTokenCount)
            }
            data.append(.object(item))
        }
        let tokens = inputs.reduce(0) { $0 + $1.tokens.count }
        return Self.json(
            .ok,
            [
                "object": "list", "data": .array(data), "model": .string(served.id),
                "usage": ["prompt_tokens": .int(tokens), "total_tokens": .int(tokens)],
            ])
    }

    /// Each value as its shortest round-trip decimal (a float's, not the double's it widens to).
    static func floats(_ vector: [Float]) -> JSONValue {
        .array(vector.map { .double(Double($0.description) ?? Double($0)) })
    }

    /// Little-endian float32 bytes in base64, as OpenAI's `encoding_format: "base64"`.
    static func base64(_ vector: [Float]) -> String {
        var bytes = Data(capacity: vector.count * 4)
        for value in vector { withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
        return bytes.base64EncodedString()
    }
}
