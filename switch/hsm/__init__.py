"""Software HSM speaking the payShield-style host command protocol, and the HsmClient."""
