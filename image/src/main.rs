//! aergo-image: builds the initramfs and the flashable disk image.

fn main() {}
