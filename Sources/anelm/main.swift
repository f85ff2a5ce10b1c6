import ANELM
print("anelm")
