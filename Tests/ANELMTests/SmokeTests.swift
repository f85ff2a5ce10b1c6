import XCTest
import ANELM

final class SmokeTests: XCTestCase {
    func testTensorTypeSizes() {
        XCTAssertEqual(TensorType.q4_1.byteCount(elements: 64), 40)
        XCTAssertNil(TensorType.q8_0.byteCount(elements: 33))
    }
}
