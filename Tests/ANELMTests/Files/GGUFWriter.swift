import ANELM
import Foundation

/// Writes small GGUF files for tests (every metadata type, any tensors).
struct GGUFWriter {
    enum Value {
        case u8(UInt8)
        case i8(Int8)
        case u16(UInt16)
        case i16(Int16)
        case u32(UInt32)
        case i32(Int32)
        case f32(Float)
        case bool(Bool)
        case string(String)
        case array(elementType: UInt32, [Value])
        case u64(UInt64)
        case i64(Int64)
        case f64(Double)

        var typeID: UInt32 {
            switch self {
            case .u8: return 0
            case .i8: return 1
            case .u16: return 2
            case .i16: return 3
            case .u32: return 4
            case .i32: return 5
            case .f32: return 6
            case .bool: return 7
            case .string: return 8
            case .array: return 9
            case .u64: return 10
            case .i64: return 11
            case .f64: return 12
            }
        }
    }

    var version: UInt32 = 3
    var metadata: [(String, Value)] = []
    /// name, GGUF dims (innermost first), type, bytes.
    var tensors: [(String, [UInt64], UInt32, [UInt8])] = []
    var alignment = 32

    func data() -> Data {
        var d = Data()
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func putString(_ s: String) {
            put(UInt64(s.utf8.count))
            d.append(contentsOf: Array(s.utf8))
        }
        func putValue(_ v: Value) {
            switch v {
            case .u8(let x): put(x)
            case .i8(let x): put(x)
            case .u16(let x): put(x)
            case .i16(let x): put(x)
            case .u32(let x): put(x)
            case .i32(let x): put(x)
            case .f32(let x): put(x.bitPattern)
            case .bool(let x): put(UInt8(x ? 1 : 0))
            case .string(let s): putString(s)
            case .array(let t, let items):
                put(t)
                put(UInt64(items.count))
                items.forEach(putValue)
            case .u64(let x): put(x)
            case .i64(let x): put(x)
            case .f64(let x): put(x.bitPattern)
            }
        }
        put(UInt32(0x4655_4747))
        put(version)
        put(UInt64(tensors.count))
        put(UInt64(metadata.count))
        for (k, v) in metadata {
            putString(k)
            put(v.typeID)
            putValue(v)
        }
        var offset: UInt64 = 0
        var offsets: [UInt64] = []
        for t in tensors {
            offsets.append(offset)
            offset += UInt64((t.3.count + alignment - 1) / alignment * alignment)
        }
        for (i, t) in tensors.enumerated() {
            putString(t.0)
            put(UInt32(t.1.count))
            t.1.forEach { put($0) }
            put(t.2)
            put(offsets[i])
        }
        while d.count % alignment != 0 { d.append(0) }
        for t in tensors {
            d.append(contentsOf: t.3)
            while (d.count) % alignment != 0 { d.append(0) }
        }
        return d
    }

    func write(to url: URL) throws { try data().write(to: url) }
}

func temporaryFile(_ name: String) -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("anelm-tests-\(ProcessInfo.processInfo.processIdentifier)")
    try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent(name)
}

func floatBytes(_ values: [Float]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

/// The default model's path when it is installed (scripts/test installs it), else nil.
func defaultModelPath() -> String? {
    let path = DefaultModel.path.path
    return FileManager.default.fileExists(atPath: path) ? path : nil
}

/// Gemma 3 270M (`scripts/fetch-gemma3` installs it; `ANELM_GEMMA_GGUF` overrides), else nil.
func gemmaModelPath() -> String? {
    let path =
        ProcessInfo.processInfo.environment["ANELM_GEMMA_GGUF"]
        ?? DefaultModel.cacheDirectory.appendingPathComponent("models/gemma-3-270m-q4_k_m.gguf").path
    return FileManager.default.fileExists(atPath: path) ? path : nil
}
