import ANELM
import Foundation

/// Bytes at a fixed address for as long as a tensor made from them lives (a `Data`'s pointer is only
/// valid inside `withUnsafeBytes`: small ones are stored inline and copied).
final class StableBytes {
    let pointer: UnsafeMutableRawPointer
    let count: Int
    init(_ bytes: [UInt8]) {
        count = bytes.count
        pointer = .allocate(byteCount: max(count, 1), alignment: 64)
        bytes.withUnsafeBytes { pointer.copyMemory(from: $0.baseAddress!, byteCount: count) }
    }
    deinit { pointer.deallocate() }

    /// A tensor of `type` and `shape` over these bytes.
    func tensor(_ type: TensorType, shape: [Int], name: String = "w") -> Tensor {
        Tensor(name: name, type: type, shape: shape, data: UnsafeRawBufferPointer(start: pointer, count: count), owner: self)
    }
}
