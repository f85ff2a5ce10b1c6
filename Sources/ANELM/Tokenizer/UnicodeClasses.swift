/// The character classes the split regexes use (`\p{L}`, `\p{N}`, `\s`), from the Unicode tables, with an ASCII fast path.
enum UnicodeClass {
    @inline(__always) static func isLetter(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if v < 0x80 {
            let lower = v | 0x20
            return lower >= 0x61 && lower <= 0x7A
        }
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    @inline(__always) static func isNumber(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if v < 0x80 { return v >= 0x30 && v <= 0x39 }
        switch s.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    /// Unicode White_Space, which is what `\s` means in the Oniguruma regexes `tokenizers` runs.
    @inline(__always) static func isWhitespace(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if v < 0x80 { return v == 0x20 || (v >= 0x09 && v <= 0x0D) }
        return s.properties.isWhitespace
    }

    /// `[^\s\p{L}\p{N}]`
    @inline(__always) static func isOther(_ s: Unicode.Scalar) -> Bool {
        !isWhitespace(s) && !isLetter(s) && !isNumber(s)
    }

    @inline(__always) static func isNewline(_ s: Unicode.Scalar) -> Bool { s == "\r" || s == "\n" }

    /// Rust's `char::is_alphanumeric`, which `tokenizers` uses for single-word added tokens.
    @inline(__always) static func isWordCharacter(_ s: Unicode.Scalar) -> Bool {
        isNumber(s) || s.properties.isAlphabetic
    }
}
