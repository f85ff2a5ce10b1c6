import Foundation

/// Writes one `.safetensors` file front to back: the JSON header (every tensor's dtype, shape and byte range,
/// known from the plans), padded with spaces to 8 bytes as the format recommends, then each tensor's bytes in
/// plan order.
final class SafetensorsWriter {
    private let handle: OutputFile
    private let plans: [GGUFTensorPlan]
    private var next = 0

    static func dtype(_ type: TensorType) throws -> String {
        switch type {
        case .f32: return "F32"
        case .f16: return "F16"
        case .bf16: return "BF16"
        default: throw ANELMError("safetensors stores f32, f16 or bf16, not \(type)")
        }
    }

    init(path: String, tensors: [GGUFTensorPlan]) throws {
        handle = try OutputFile(creating: path)
        plans = tensors
        var header: JSONObject = ["__metadata__": ["format": "pt"]]
        var offset = 0
        for plan in tensors {
            let end = offset + plan.byteCount
            header[plan.name] = ["dtype": .string(try Self.dtype(plan.type)), "shape": .array(plan.shape.map { .int($0) }), "data_offsets": [.int(offset), .int(end)]]
            offset = end
        }
        var text = Array(JSONValue.object(header).text.utf8)
        while text.count % 8 != 0 { text.append(0x20) }
        var bytes: [UInt8] = []
        GGUFEncodedValue.append(UInt64(text.count), to: &bytes)
        try handle.write(bytes + text)
    }

    func write(_ bytes: [UInt8]) throws {
        guard next < plans.count, bytes.count == plans[next].byteCount else { throw ANELMError("safetensors: tensor bytes do not match the plan") }
        try handle.write(bytes)
        next += 1
    }

    func finish() throws {
        guard next == plans.count else { throw ANELMError("\(plans.count - next) planned tensors were not written") }
        try handle.close()
    }
}
