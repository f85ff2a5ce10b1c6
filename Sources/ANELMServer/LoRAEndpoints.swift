import ANELM
import Foundation
import Hummingbird

// The LoRA adapters loaded at start (`--lora`), as llama-server shows them: `GET /lora-adapters` lists
// `[{"id", "path", "scale"}]`; `POST /lora-adapters` with `[{"id", "scale"}]` sets the scales requests use by
// default (an adapter left out gets 0). A request picks its own with `"lora": [{"id", "scale"}]`. The adapters are
// the default model's (the first one served; `--lora` loads them with it).

extension Endpoints {
    func registerLoRAAdapters(_ router: Router<Context>) {
        router.get("/lora-adapters") { _, _ in try await listLoRAAdapters() }
        router.post("/lora-adapters") { request, _ in try await setLoRAAdapters(request) }
    }

    func listLoRAAdapters() async throws -> Response {
        let model = try await pool.model(named: nil).served
        let entries = model.loaded.model.adapters?.entries ?? []
        return Self.json(
            .ok,
            .array(
                entries.map { entry in
                    [
                        "id": .int(entry.id), "path": .string(entry.path), "scale": .double(Double(entry.scale)),
                        "format": .string(entry.format.rawValue), "merged": .bool(entry.merged),
                    ]
                }))
    }

    func setLoRAAdapters(_ request: Request) async throws -> Response {
        let body = try await readBody(request)
        let value = try JSONValue.requestBody(body)
        let named = try Self.loraList(value, param: "body")
        let model = try await pool.model(named: nil).served
        let scales = try Self.loraScales(named, adapters: model.loaded.model.adapters, param: "body")
        do {
            try model.loaded.model.adapters?.setScales(zip(scales.indices, scales).map { ($0, $1) })
        } catch let error as ANELMError {
            throw APIError.invalid(error.message, param: "body")
        }
        return Self.json(.ok, ["success": true])
    }

    /// `[{"id": 0, "scale": 0.5}, …]`, each id once.
    static func loraList(_ value: JSONValue, param: String) throws -> [(id: Int, scale: Float)] { try parseLoRAList(value, param: param) }
}

/// `[{"id": 0, "scale": 0.5}, …]`, each id once (`POST /lora-adapters`, a request's `lora`).
func parseLoRAList(_ value: JSONValue, param: String) throws -> [(id: Int, scale: Float)] {
        guard let items = value.arrayValue else { throw APIError.wrongType(param, "an array of {\"id\", \"scale\"} objects") }
        var seen = Set<Int>()
        return try items.enumerated().map { index, item in
            let at = "\(param)[\(index)]"
            guard let object = item.objectValue else { throw APIError.wrongType(at, "an object") }
            guard let id = object["id"]?.integerValue else { throw APIError.wrongType("\(at).id", "an integer") }
            guard let scale = object["scale"]?.numberValue, scale.isFinite else { throw APIError.wrongType("\(at).scale", "a number") }
            if let extra = object.keys.first(where: { $0 != "id" && $0 != "scale" }) {
                throw APIError.invalid("'\(at).\(extra)' is not a field of a LoRA entry (id, scale)", param: "\(at).\(extra)")
            }
            guard seen.insert(id).inserted else { throw APIError.invalid("LoRA adapter \(id) is listed twice", param: at) }
            return (id, Float(scale))
        }
    }

extension Endpoints {
    /// Every adapter's scale for a list: those named, 0 for the others; a 400 naming `param` for an unknown id or a
    /// merged adapter given another scale.
    static func loraScales(_ named: [(id: Int, scale: Float)], adapters: LoRAAdapterTable?, param: String) throws -> [Float] {
        guard let adapters else {
            if named.isEmpty { return [] }
            throw APIError.invalid("this server was started without LoRA adapters (--lora)", param: param)
        }
        do {
            return try adapters.requestScales(named)
        } catch let error as ANELMError {
            throw APIError.invalid(error.message, param: param)
        }
    }
}
