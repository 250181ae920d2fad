// Must NOT compile: a 16-channel output feeds an 8-channel input.
#include <kiln/kiln.hpp>

int main() {
  kiln::Sequential<kiln::Conv2d<1, 16, 3>, kiln::ReLU<>, kiln::Conv2d<8, 2, 1>> net;
  (void)net;
}
