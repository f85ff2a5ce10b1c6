import ANELM
import CANELMKernels
import Foundation
import GRDB

extension VectorFormat {
    /// Bytes of one stored vector of `dimensions` values.
    func rowBytes(_ dimensions: Int) -> Int {
        switch self {
        case .f32: dimensions * 4
        case .int8: dimensions / Self.int8BlockSize * (2 + Self.int8BlockSize)
        }
    }

    var tensorType: TensorType { self == .f32 ? .f32 : .q8_0 }

    /// A vector as stored: little-endian f32, or Q8_0 blocks (an f16 scale max|x|/127, then 32 rounded int8).
    func encode(_ vector: [Float]) -> Data {
        switch self {
        case .f32:
            return vector.withUnsafeBytes { Data($0) }
        case .int8:
            var data = Data(capacity: rowBytes(vector.count))
            for start in stride(from: 0, to: vector.count, by: Self.int8BlockSize) {
                let block = vector[start..<min(vector.count, start + Self.int8BlockSize)]
                let amax = block.reduce(0) { max($0, abs($1)) }
                let scale = amax / 127
                let bits = anelm_f32_to_f16(scale)
                data.append(UInt8(bits & 0xFF))
                data.append(UInt8(bits >> 8))
                let inverse: Float = scale > 0 ? 1 / scale : 0
                for x in block { data.append(UInt8(bitPattern: Int8(max(-127, min(127, (x * inverse).rounded()))))) }
            }
            return data
        }
    }

    /// A stored vector back as f32; a blob of the wrong size is a corrupt store.
    func decode(_ data: Data, dimensions: Int) throws -> [Float] {
        guard data.count == rowBytes(dimensions) else {
            throw ANELMError("a stored vector has \(data.count) bytes, not the \(rowBytes(dimensions)) of \(dimensions) \(rawValue) values: the store is corrupt")
        }
        var out = [Float](repeating: 0, count: dimensions)
        data.withUnsafeBytes { raw in
            out.withUnsafeMutableBufferPointer { dst in
                guard let src = raw.baseAddress, let d = dst.baseAddress else { return }
                _ = anelm_dequantize(Int32(tensorType.rawValue), src, d, dimensions)
            }
        }
        return out
    }
}

/// Every chunk's vector in one contiguous matrix, rows in chunk-id order, loaded once per store generation:
/// a query's cosine with all of them is one matrix-vector product through the matrix kernels (f32, or Q8_0 for
/// int8 vectors), split over the thread pool.
public final class VectorIndex: @unchecked Sendable {
    public let chunkIDs: [Int64]
    /// Row of each chunk id, for looking vectors up by chunk.
    public let rowOfChunk: [Int64: Int]
    public let dimensions: Int
    public let format: VectorFormat
    let matrix: WeightMatrix?
    let storage: Storage

    final class Storage {
        let pointer: UnsafeMutableRawPointer
        init(bytes: Int) { pointer = .allocate(byteCount: max(bytes, 1), alignment: 64) }
        deinit { pointer.deallocate() }
    }

    /// Reads every vector of `store`.
    public convenience init(store: ContextStore, record: EmbedderRecord) throws {
        let rowBytes = record.vectorFormat.rowBytes(record.dimensions)
        let (ids, storage) = try store.read { db -> ([Int64], Storage) in
            let count = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM vectors") ?? 0
            let storage = Storage(bytes: count * rowBytes)
            var ids: [Int64] = []
            ids.reserveCapacity(count)
            let rows = try Row.fetchCursor(db, sql: "SELECT chunk_id, data FROM vectors ORDER BY chunk_id")
            while let row = try rows.next() {
                guard ids.count < count else { break }
                let data = try row.decode(Data.self, atIndex: 1)
                guard data.count == rowBytes else {
                    throw ANELMError("a stored vector has \(data.count) bytes, not \(rowBytes): the store \(store.path) is corrupt; index it again")
                }
                data.withUnsafeBytes { bytes in
                    if let base = bytes.baseAddress { storage.pointer.advanced(by: ids.count * rowBytes).copyMemory(from: base, byteCount: rowBytes) }
                }
                ids.append(try row.decode(Int64.self, atIndex: 0))
            }
            return (ids, storage)
        }
        try self.init(chunkIDs: ids, storage: storage, dimensions: record.dimensions, format: record.vectorFormat)
    }

    /// Vectors given directly (benchmarks, tests): `vectors[i]` belongs to `chunkIDs[i]`.
    public convenience init(chunkIDs: [Int64], vectors: [[Float]], dimensions: Int, format: VectorFormat) throws {
        guard vectors.count == chunkIDs.count, vectors.allSatisfy({ $0.count == dimensions }) else {
            throw ANELMError("\(vectors.count) vectors of \(dimensions) values expected for \(chunkIDs.count) chunks")
        }
        let rowBytes = format.rowBytes(dimensions)
        let storage = Storage(bytes: vectors.count * rowBytes)
        for (i, vector) in vectors.enumerated() {
            let data = format.encode(vector)
            data.withUnsafeBytes { bytes in
                if let base = bytes.baseAddress { storage.pointer.advanced(by: i * rowBytes).copyMemory(from: base, byteCount: rowBytes) }
            }
        }
        try self.init(chunkIDs: chunkIDs, storage: storage, dimensions: dimensions, format: format)
    }

    init(chunkIDs: [Int64], storage: Storage, dimensions: Int, format: VectorFormat) throws {
        self.chunkIDs = chunkIDs
        rowOfChunk = Dictionary(chunkIDs.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        self.dimensions = dimensions
        self.format = format
        self.storage = storage
        if chunkIDs.isEmpty {
            matrix = nil
        } else {
            let bytes = chunkIDs.count * format.rowBytes(dimensions)
            let tensor = Tensor(
                name: "chunk vectors", type: format.tensorType, shape: [chunkIDs.count, dimensions],
                data: UnsafeRawBufferPointer(start: storage.pointer, count: bytes), owner: storage)
            matrix = try WeightMatrix(tensor)
        }
    }

    public var count: Int { chunkIDs.count }

    /// The stored vector of row `index`, as f32.
    public func vector(at index: Int) -> [Float] {
        guard let matrix, index >= 0, index < count else { return [] }
        var out = [Float](repeating: 0, count: dimensions)
        out.withUnsafeMutableBufferPointer { buffer in
            if let base = buffer.baseAddress { matrix.dequantizeRow(index, into: base) }
        }
        return out
    }


    /// The `k` rows with the highest dot product with `query` (the cosine, vectors being unit length), best first.
    public func nearest(_ query: [Float], k: Int, pool: ThreadPool) throws -> [(row: Int, score: Float)] {
        guard query.count == dimensions else { throw ANELMError("the query vector has \(query.count) values; the store's vectors have \(dimensions)") }
        guard let matrix, k > 0 else { return [] }
        var scores = [Float](repeating: 0, count: count)
        query.withUnsafeBufferPointer { q in
            scores.withUnsafeMutableBufferPointer { s in
                guard let x = q.baseAddress, let y = s.baseAddress else { return }
                Kernels.matmul(matrix, x, y, tokens: 1, pool: pool)
            }
        }
        return topK(scores, k)
    }
}

/// Little-endian f32 values from a blob (copied: a blob's bytes need not be aligned for Float).
func floats(_ data: Data) -> [Float] {
    let count = data.count / 4
    var out = [Float](repeating: 0, count: count)
    out.withUnsafeMutableBytes { dst in _ = data.copyBytes(to: dst, count: count * 4) }
    return out
}

/// Indices of the `k` largest values, largest first (ties: lower index first). A bounded min-heap: one pass over
/// the scores, O(n log k), no sort of all n.
public func topK(_ scores: [Float], _ k: Int) -> [(row: Int, score: Float)] {
    let k = min(k, scores.count)
    guard k > 0 else { return [] }
    // Heap of (score, row) with the worst kept at the root: lower score, or equal score and higher row.
    var heap: [(score: Float, row: Int)] = []
    heap.reserveCapacity(k)
    func worse(_ a: (score: Float, row: Int), _ b: (score: Float, row: Int)) -> Bool { a.score < b.score || (a.score == b.score && a.row > b.row) }
    func siftDown(_ start: Int) {
        var i = start
        while true {
            let l = 2 * i + 1
            let r = l + 1
            var m = i
            if l < heap.count && worse(heap[l], heap[m]) { m = l }
            if r < heap.count && worse(heap[r], heap[m]) { m = r }
            if m == i { return }
            heap.swapAt(i, m)
            i = m
        }
    }
    for (row, score) in scores.enumerated() {
        let score = score.isNaN ? -.infinity : score
        if heap.count < k {
            heap.append((score, row))
            var i = heap.count - 1
            while i > 0 {
                let parent = (i - 1) / 2
                guard worse(heap[i], heap[parent]) else { break }
                heap.swapAt(i, parent)
                i = parent
            }
        } else if worse(heap[0], (score, row)) {
            heap[0] = (score, row)
            siftDown(0)
        }
    }
    return heap.sorted { worse($1, $0) }.map { (row: $0.row, score: $0.score) }
}
