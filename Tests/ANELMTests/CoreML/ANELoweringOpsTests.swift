import ANELM
import Foundation
import XCTest

/// The executor's ops against plain f32 code on small shapes, fp16 rounding, and states.
final class ANELoweringOpsTests: XCTestCase {
    func testRoundingMatchesFloat16() {
        var rng = SeededGenerator(seed: 11)
        for _ in 0..<10_000 {
            let x = Float(bitPattern: UInt32.random(in: 0x3000_0000...0x4780_0000, using: &rng)) * (Bool.random(using: &rng) ? 1 : -1)
            XCTAssertEqual(ANEExecutor.roundedToFP16(x), Float(Float16(x)), "\(x)")
        }
        XCTAssertEqual(ANEExecutor.roundedToFP16(70_000), .infinity)
        XCTAssertEqual(ANEExecutor.roundedToFP16(1e-6), Float(Float16(Float(1e-6))))
    }

    func testEveryOpAgainstF32() throws {
        var rng = SeededGenerator(seed: 12)
        func random(_ n: Int, _ range: ClosedRange<Float> = -2...2) -> [Float] { (0..<n).map { _ in Float.random(in: range, using: &rng) } }
        func check(
            _ name: String, _ build: (ANEGraphBuilder, ANETensor, ANETensor) throws -> ANETensor, a: [Float], sa: [Int], b: [Float], sb: [Int],
            expected: [Float], file: StaticString = #filePath, line: UInt = #line
        ) throws {
            let g = ANEGraphBuilder()
            let x = g.input("a", shape: sa)
            let y = g.input("b", shape: sb)
            try g.output("out", try build(g, x, y))
            let out = try XCTUnwrap(try ANEExecutor(graph: g.build(), pool: ThreadPool(threads: 1)).run(["a": a, "b": b])["out"])
            XCTAssertEqual(out.count, expected.count, name, file: file, line: line)
            // Inputs are rounded to fp16 too, so allow a few fp16 steps relative to the size of the result.
            let scale = max(expected.map { Swift.abs($0) }.max() ?? 1, 1e-3)
            for (o, e) in zip(out, expected) { XCTAssertEqual(o, e, accuracy: 4e-3 * scale, name, file: file, line: line) }
        }
        let a = random(2 * 3 * 1 * 5).map(ANEExecutor.roundedToFP16)
        let b = random(3 * 5).map(ANEExecutor.roundedToFP16)
        let sa = [1, 6, 1, 5]
        let sb = [1, 3, 1, 5]
        let a6 = Array(a.prefix(30))
        let b1 = Array(b.prefix(5))
        let sb1 = [1, 1, 1, 5]
        try check("mul", { try $0.mul($1, $2) }, a: a6, sa: sa, b: b1, sb: sb1, expected: a6.indices.map { a6[$0] * b1[$0 % 5] })
        try check("add", { try $0.add($1, $2) }, a: a6, sa: sa, b: b1, sb: sb1, expected: a6.indices.map { a6[$0] + b1[$0 % 5] })
        try check("sub", { try $0.sub($1, $2) }, a: a6, sa: sa, b: b1, sb: sb1, expected: a6.indices.map { a6[$0] - b1[$0 % 5] })
        try check("abs", { g, x, _ in g.abs(x) }, a: a6, sa: sa, b: b1, sb: sb1, expected: a6.map { Swift.abs($0) })
        try check("square", { g, x, _ in g.square(x) }, a: a6, sa: sa, b: b1, sb: sb1, expected: a6.map { $0 * $0 })
        try check("sigmoid", { g, x, _ in g.sigmoid(x) }, a: a6, sa: sa, b: b1, sb: sb1, expected: a6.map { 1 / (1 + exp(-$0)) })
        try check("tanh", { g, x, _ in g.tanh(x) }, a: a6, sa: sa, b: b1, sb: sb1, expected: a6.map { Float(Foundation.tanh(Double($0))) })
        // xLSTM's gate ops, against Double references; softplus also far out on both sides (large x returns x).
        try check("maximum", { try $0.maximum($1, $2) }, a: a6, sa: sa, b: b1, sb: sb1, expected: a6.indices.map { max(a6[$0], b1[$0 % 5]) })
        try check("minimum", { try $0.minimum($1, $2) }, a: a6, sa: sa, b: b1, sb: sb1, expected: a6.indices.map { min(a6[$0], b1[$0 % 5]) })
        try check("exp", { g, x, _ in g.exp(x) }, a: a6, sa: sa, b: b1, sb: sb1, expected: a6.map { Float(Foundation.exp(Double($0))) })
        let spread = a6.map { ANEExecutor.roundedToFP16($0 * 12) }
        try check(
            "softplus", { g, x, _ in g.softplus(x) }, a: spread, sa: sa, b: b1, sb: sb1, expected: spread.map { Float(Foundation.log1p(Foundation.exp(Double($0)))) })
        // GELU: PyTorch's tanh form and the erf form, from their definitions (in Double).
        try check(
            "gelu-tanh", { g, x, _ in g.gelu(x, tanhApproximation: true) }, a: a6, sa: sa, b: b1, sb: sb1,
            expected: a6.map { v in
                let x = Double(v)
                return Float(0.5 * x * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x))))
            })
        try check(
            "gelu-exact", { g, x, _ in g.gelu(x, tanhApproximation: false) }, a: a6, sa: sa, b: b1, sb: sb1,
            expected: a6.map { v in
                Float(0.5 * Double(v) * (1 + erf(Double(v) / 2.0.squareRoot())))
            })
        let positive = a6.map { Swift.abs($0) + 0.5 }
        try check("inverse", { g, x, _ in g.inverse(x) }, a: positive, sa: sa, b: b1, sb: sb1, expected: positive.map { 1 / $0 })
        try check("rsqrt", { g, x, _ in g.rsqrt(x) }, a: positive, sa: sa, b: b1, sb: sb1, expected: positive.map { 1 / $0.squareRoot() })
        // Reductions over channels (axis 1) and positions (axis 3).
        let perPosition = (0..<5).map { s in (0..<6).map { a6[$0 * 5 + s] } }
        try check("reduce_mean", { g, x, _ in try g.reduceMean(x, axis: 1) }, a: a6, sa: sa, b: b1, sb: sb1, expected: perPosition.map { $0.reduce(0, +) / 6 })
        try check("reduce_max", { g, x, _ in try g.reduceMax(x, axis: 1) }, a: a6, sa: sa, b: b1, sb: sb1, expected: perPosition.map { $0.max()! })
        try check(
            "reduce_argmax", { g, x, _ in try g.reduceArgmax(x, axis: 3) }, a: a6, sa: sa, b: b1, sb: sb1,
            expected: (0..<6).map { c in Float((0..<5).max { a6[c * 5 + $0] < a6[c * 5 + $1] }!) })
        try check(
            "softmax", { g, x, _ in try g.softmax(x, axis: 3) }, a: a6, sa: sa, b: b1, sb: sb1,
            expected: (0..<30).map { i in
                let row = a6[(i / 5 * 5)..<(i / 5 * 5 + 5)]
                return exp(a6[i]) / row.map { exp($0) }.reduce(0, +)
            })
        // matmul: (6×5)·(3×5)ᵀ = 6×3, and (6×5)ᵀ·(6×5) = 5×5.
        try check(
            "matmul", { try $0.matmul($1, $2, transposeY: true) }, a: a6, sa: sa, b: b, sb: sb,
            expected: (0..<18).map { (i: Int) -> Float in
                let products: [Float] = (0..<5).map { (k: Int) -> Float in a6[i / 3 * 5 + k] * b[i % 3 * 5 + k] }
                return products.reduce(0, +)
            })
        try check(
            "matmul-tx", { g, x, _ in try g.matmul(x, x, transposeX: true) }, a: a6, sa: sa, b: b1, sb: sb1,
            expected: (0..<25).map { (i: Int) -> Float in
                let products: [Float] = (0..<6).map { (k: Int) -> Float in a6[k * 5 + i / 5] * a6[k * 5 + i % 5] }
                return products.reduce(0, +)
            })
        try check("slice_by_index", { g, x, _ in try g.slice(x, axis: 1, begin: 2, end: 4) }, a: a6, sa: sa, b: b1, sb: sb1, expected: Array(a6[10..<20]))
        try check("concat", { try $0.concat([$1, $2], axis: 1) }, a: a6, sa: sa, b: b, sb: sb, expected: a6 + b)
        // conv: weights (4, 6, 1, 1) and a bias, over 5 positions.
        let w = random(24).map(ANEExecutor.roundedToFP16)
        let bias = random(4).map(ANEExecutor.roundedToFP16)
        try check(
            "conv",
            { g, x, _ in
                try g.conv(x, weight: try g.constant("w", w, shape: [4, 6, 1, 1]), bias: try g.constant("bias", bias, shape: [4]))
            }, a: a6, sa: sa, b: b1, sb: sb1,
            expected: (0..<20).map { i in
                let o = i / 5
                let s = i % 5
                return (0..<6).map { w[o * 6 + $0] * a6[$0 * 5 + s] }.reduce(bias[o], +)
            })
        // Wide results (≥ 16 columns) take the executor's other path: (3×4)·(4×20), (4×3)ᵀ·(4×20), (3×4)·(20×4)ᵀ.
        let p = random(12).map(ANEExecutor.roundedToFP16)
        let q = random(80).map(ANEExecutor.roundedToFP16)
        let qt = (0..<80).map { q[($0 % 4) * 20 + $0 / 4] }  // q transposed: (20, 4)
        let wide = (0..<60).map { (i: Int) -> Float in (0..<4).map { p[i / 20 * 4 + $0] * q[$0 * 20 + i % 20] }.reduce(0, +) }
        try check("matmul-wide", { try $0.matmul($1, $2) }, a: p, sa: [1, 3, 1, 4], b: q, sb: [1, 4, 1, 20], expected: wide)
        let pt = (0..<12).map { p[($0 % 3) * 4 + $0 / 3] }  // p transposed: (4, 3)
        try check("matmul-wide-tx", { try $0.matmul($1, $2, transposeX: true) }, a: pt, sa: [1, 4, 1, 3], b: q, sb: [1, 4, 1, 20], expected: wide)
        try check("matmul-wide-ty", { try $0.matmul($1, $2, transposeY: true) }, a: p, sa: [1, 3, 1, 4], b: qt, sb: [1, 20, 1, 4], expected: wide)
        // matmul with a one-hot right factor places columns exactly (the KV write): (2×3)·(3×4).
        let block: [Float] = [1.5, -2, 3.25, 0.5, 7, -0.125]
        let onehot: [Float] = [0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
        try check(
            "matmul-place", { try $0.matmul($1, $2) }, a: block, sa: [1, 2, 1, 3], b: onehot, sb: [1, 3, 1, 4],
            expected: [0, 1.5, 0, -2, 0, 0.5, 0, 7])
    }

    /// MIL `gather` (rank-1 indices, any axis: the embedding's last axis) and `gather_along_axis` (the
    /// chunk winner), against direct indexing; out-of-range indices are errors.
    func testGathers() throws {
        let table: [Float] = (0..<15).map { Float($0) * 0.5 }
        let g = ANEGraphBuilder()
        let index = g.input("i", shape: [2], dtype: .int32)
        let t = try g.constant("t", table, shape: [3, 5, 1, 1])
        try g.output("rows", try g.gather(t, indices: index, axis: 0))  // (2, 5, 1, 1)
        let columns = try g.constant("u", table, shape: [1, 3, 1, 5])
        try g.output("columns", try g.gather(columns, indices: index, axis: 3))  // (1, 3, 1, 2)
        let executor = try ANEExecutor(graph: g.build())
        let out = try executor.run(["i": [2, 0]])
        XCTAssertEqual(out["rows"], Array(table[10..<15]) + Array(table[0..<5]))
        XCTAssertEqual(out["columns"], [table[2], table[0], table[7], table[5], table[12], table[10]])
        XCTAssertThrowsError(try executor.run(["i": [3, 0]]))
        XCTAssertThrowsError(try ANEGraphBuilder().gather(t, indices: g.input("j", shape: [1, 1, 1, 1], dtype: .int32), axis: 0))

        let h = ANEGraphBuilder()
        let x = h.input("x", shape: [1, 4, 1, 2], dtype: .int32)
        let at = h.input("at", shape: [1, 1, 1, 2], dtype: .int32)
        try h.output("picked", try h.gatherAlongAxis(x, indices: at, axis: 1))
        let picker = try ANEExecutor(graph: h.build())
        // x[c][s] = 10·c + s; column 0 takes channel 3, column 1 channel 1.
        XCTAssertEqual(try picker.run(["x": [0, 1, 10, 11, 20, 21, 30, 31], "at": [3, 1]])["picked"], [30, 11])
        XCTAssertThrowsError(try picker.run(["x": [0, 1, 10, 11, 20, 21, 30, 31], "at": [4, 1]]))
    }

    func testStatePersistsAcrossRuns() throws {
        let g = ANEGraphBuilder()
        let x = g.input("x", shape: [1, 2, 1, 1])
        let state = g.readState("acc", shape: [1, 2, 1, 1])
        let sum = try g.add(state.value, x)
        try g.writeState(state.state, sum)
        try g.output("sum", sum)
        let executor = try ANEExecutor(graph: g.build())
        _ = try executor.run(["x": [1, 2]])
        XCTAssertEqual(try executor.run(["x": [0.5, 0.25]])["sum"], [1.5, 2.25])
        executor.reset()
        XCTAssertEqual(try executor.run(["x": [1, 1]])["sum"], [1, 1])
    }
}
